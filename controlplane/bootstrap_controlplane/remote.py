"""The CLI acting through the API (`--url`) with the admin key, instead of on a local data dir.

Every such command is one admin request, so the control plane records it between an auth.login and
an auth.logout event. The admin key comes from --admin-key-file or BOOTSTRAP_SAAS_ADMIN_KEY, never
from the command line.
"""
import json
import os
import ssl
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import Request, urlopen

ADMIN_KEY_ENV = "BOOTSTRAP_SAAS_ADMIN_KEY"


class RemoteError(Exception):
    pass


def admin_key(key_file):
    if key_file:
        try:
            value = Path(key_file).read_text().strip()
        except OSError as exc:
            raise RemoteError(f"cannot read the admin key file {key_file}: {exc.strerror}")
    else:
        value = os.environ.get(ADMIN_KEY_ENV, "").strip()
    if not value:
        raise RemoteError(f"--url needs the admin key: --admin-key-file FILE or {ADMIN_KEY_ENV}")
    return value


class AdminApi:
    def __init__(self, url, ca_file=None, key_file=None, timeout=30):
        self.url = url.rstrip("/")
        if urlsplit(self.url).scheme != "https":
            raise RemoteError(f"--url must be https://HOST:PORT, got {url!r}")
        self.context = ssl.create_default_context(cafile=ca_file)
        self.key = admin_key(key_file)
        self.timeout = timeout

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            with urlopen(Request(self.url + path, data=data, headers=headers, method=method),
                         context=self.context, timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except HTTPError as exc:
            try:
                error = json.loads(exc.read()).get("error", {})
            except ValueError:
                error = {}
            raise RemoteError(f"{method} {path}: HTTP {exc.code} {error.get('code', '')}: {error.get('message', '')}")
        except (URLError, OSError) as exc:
            raise RemoteError(f"{method} {self.url}{path} failed: {getattr(exc, 'reason', exc)}")

    def mint(self, profile, user, ttl=None):
        body = {"profile": profile, "user": user}
        if ttl is not None:
            body["ttl"] = ttl
        return self.request("POST", "/v1/tokens", body)

    def set_profile(self, name, manifest):
        return self.request("PUT", "/v1/profiles/" + quote(name, safe=""), manifest)

    def audit_events(self):
        after, out = 0, []
        while True:
            page = self.request("GET", "/v1/audit/events?" + urlencode({"after": after, "limit": 5000}))
            out.extend(page["events"])
            if page.get("next_after") is None:
                return out
            after = page["next_after"]
