# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one control-plane client: JSON over HTTPS, standard library only.

Used by the modules on the host and by the controller-side action plugin, so it knows nothing
about either. TLS verification is always on (hostname included); the CA is given as PEM text so
that the host trusts exactly what the controller was told to trust.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import socket
import ssl

from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import HTTPRedirectHandler, HTTPSHandler, Request, build_opener

USER_AGENT = "bootstrap-saas-provisioning/0.1"
# A 1,000-file profile fits comfortably; anything bigger than this is not a control plane answer.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
REDACTED = "<redacted>"


def token_fingerprint(token):
    """Lower-case hex SHA-256 of the token's text: the only form in which a token is shown."""
    return hashlib.sha256(str(token).encode("utf-8")).hexdigest()


def plain(value):
    """Deep copy with Ansible's tagged str/int/float subclasses turned into the builtin types."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict) or hasattr(value, "items"):
        return dict((str(k), plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return value


class ControlPlaneError(Exception):
    """A refused or failed request. status is 0 when the control plane could not be reached."""

    def __init__(self, status, code, message, retry_after=None):
        self.status = int(status)
        self.code = str(code)
        self.message = str(message)
        self.retry_after = retry_after
        super(ControlPlaneError, self).__init__("%s: %s" % (self.code, self.message))


class _NoRedirect(HTTPRedirectHandler):
    # A redirect would carry the bearer token (and a POST body holding a token) to another
    # address; the API never redirects, so a 3xx is reported as an error instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _retry_after(headers):
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(str(value).strip()))
    except ValueError:
        return None


class ControlPlaneClient:
    """JSON client for the control-plane API (docs/api.md). Every method raises ControlPlaneError."""

    def __init__(self, url, ca_pem=None, timeout=30):
        self.url = str(url).strip().rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme != "https" or not parts.hostname:
            raise ControlPlaneError(0, "invalid_url", "the control plane URL must be https://HOST[:PORT], got %r" % self.url)
        self.timeout = float(timeout) if timeout is not None else 30.0
        if ca_pem:
            try:
                context = ssl.create_default_context(cadata=str(ca_pem))
            except (ssl.SSLError, ValueError) as e:
                raise ControlPlaneError(0, "invalid_ca", "the CA PEM could not be loaded: %s" % e)
        else:
            context = ssl.create_default_context()
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        self._opener = build_opener(HTTPSHandler(context=context), _NoRedirect())
        self.retry_after = None

    def get(self, path, bearer=None):
        return self._request("GET", path, None, bearer)

    def post(self, path, body, bearer=None):
        return self._request("POST", path, body, bearer)

    def put(self, path, body, bearer=None):
        return self._request("PUT", path, body, bearer)

    @staticmethod
    def quote(segment):
        """Quote one path segment (a profile or credential name) for use in a path."""
        return quote(str(segment), safe="")

    def _request(self, method, path, body, bearer):
        path = str(path)
        if not path.startswith("/"):
            path = "/" + path
        secrets = []
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if bearer is not None:
            bearer = str(bearer)
            secrets.append(bearer)
            headers["Authorization"] = "Bearer " + bearer
        data = None
        if body is not None:
            body = plain(body)
            if isinstance(body, dict) and isinstance(body.get("token"), str):
                secrets.append(body["token"])
            data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = Request(self.url + path, data=data, headers=headers, method=method)
        self.retry_after = None
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except HTTPError as e:
            raise self._http_error(e, secrets)
        except (URLError, socket.timeout, ssl.SSLError, ConnectionError, OSError) as e:
            raise ControlPlaneError(0, "unreachable", _scrub("%s %s failed: %s" % (method, self._where(path), _reason(e)), secrets))
        try:
            with response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
                status = response.status
        except (socket.timeout, ssl.SSLError, ConnectionError, OSError) as e:
            raise ControlPlaneError(0, "unreachable", _scrub("%s %s: reading the answer failed: %s" % (method, self._where(path), _reason(e)), secrets))
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ControlPlaneError(status, "bad_response", "%s %s: the answer is larger than %d bytes" % (method, self._where(path), MAX_RESPONSE_BYTES))
        if not raw:
            return {}
        try:
            answer = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise ControlPlaneError(status, "bad_response", "%s %s: the answer is not JSON" % (method, self._where(path)))
        if not isinstance(answer, dict):
            raise ControlPlaneError(status, "bad_response", "%s %s: the answer is not a JSON object" % (method, self._where(path)))
        return answer

    def _where(self, path):
        return self.url + path.split("?", 1)[0]

    def _http_error(self, e, secrets):
        status = e.code
        retry_after = _retry_after(e.headers)
        if status == 429:
            self.retry_after = retry_after
        try:
            raw = e.read(1024 * 1024)
        except Exception:
            raw = b""
        finally:
            e.close()
        code, message = None, None
        try:
            error = json.loads(raw.decode("utf-8")).get("error")
            if isinstance(error, dict):
                code, message = error.get("code"), error.get("message")
        except (ValueError, AttributeError, UnicodeDecodeError):
            pass
        if not isinstance(code, str) or not code:
            code = "redirect_refused" if 300 <= status < 400 else "http_%d" % status
        if not isinstance(message, str):
            message = "HTTP %d %s from %s" % (status, e.reason or "", self.url)
        return ControlPlaneError(status, code, _scrub(message, secrets), retry_after=retry_after)


def _reason(e):
    reason = getattr(e, "reason", None)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed: %s" % (reason.verify_message or reason)
    if isinstance(e, socket.timeout) or isinstance(reason, socket.timeout):
        return "timed out"
    return str(reason if reason is not None else e)


def _scrub(text, secrets):
    # The control plane promises never to echo a token; this keeps the promise on our side too.
    text = str(text)
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, REDACTED)
    return text
