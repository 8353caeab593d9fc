# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of bootstrap_saas.provisioning.token_verify (documented in plugins/modules/token_verify.py)."""

from __future__ import annotations

import hashlib
import threading

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient,
    ControlPlaneError,
    token_fingerprint,
)
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._jwks import JwksCache, JwksError, missing_libraries
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._tokens import (
    DEFAULT_ISSUER,
    DEFAULT_LEEWAY,
    DEFAULT_MAX_TTL,
    PROVISION_AUDIENCE,
    PROVISION_TYP,
    TokenRefused,
    unverified_header,
    verify_token,
)

JWKS_PATH = "/.well-known/jwks.json"
VALIDATE_PATH = "/v1/tokens/validate"

ARGUMENT_SPEC = {
    "url": {"type": "str", "required": True},
    "token": {"type": "str", "required": True, "no_log": True},
    "ca_path": {"type": "path"},
    "issuer": {"type": "str", "default": DEFAULT_ISSUER},
    "audience": {"type": "str", "default": PROVISION_AUDIENCE},
    "leeway": {"type": "int", "default": DEFAULT_LEEWAY},
    "max_ttl": {"type": "int", "default": DEFAULT_MAX_TTL},
    "timeout": {"type": "int", "default": 30},
}

# One cache per control plane (URL and trusted CA) for the life of the process, so that the tasks
# and hosts one worker handles share a JWKS fetch, and a flood of unknown kids stays one refetch.
_JWKS_CACHES = {}
_JWKS_CACHES_LOCK = threading.Lock()


def jwks_cache_for(url, ca_pem, timeout):
    key = (url, hashlib.sha256((ca_pem or "").encode("utf-8")).hexdigest())
    with _JWKS_CACHES_LOCK:
        cache = _JWKS_CACHES.get(key)
        if cache is None:
            client = ControlPlaneClient(url, ca_pem=ca_pem, timeout=timeout)
            cache = _JWKS_CACHES[key] = JwksCache(lambda: client.get(JWKS_PATH))
        return cache


def _read_ca(ca_path):
    try:
        with open(ca_path, "r", encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise AnsibleActionFail("cannot read ca_path %s on the controller: %s" % (ca_path, to_text(e)))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True  # validation consumes nothing
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        missing = missing_libraries("jwt", "cryptography")
        if missing:
            raise AnsibleActionFail("token_verify needs PyJWT and cryptography on the controller; cannot import: %s"
                                    % ", ".join(missing))

        # Tagged strings (ansible-core 2.19) become plain str before they reach pyjwt, ssl or urllib.
        token = str(args["token"]).strip()
        url = str(args["url"]).strip().rstrip("/")
        ca_pem = _read_ca(str(args["ca_path"])) if args["ca_path"] else None
        if not token:
            # An unset variable, not a malformed token: say so rather than fingerprint the empty string.
            result.update(changed=False, failed=True, reason="missing",
                          msg="no token given: the token option is empty (with the bootstrap_agent role, set "
                              "bootstrap_agent_token or bootstrap_agent_enrollment_key, or BOOTSTRAP_SAAS_TOKEN "
                              "or BOOTSTRAP_SAAS_ENROLLMENT_KEY in the controller's environment)")
            return result
        fingerprint = token_fingerprint(token)
        result.update(changed=False, fingerprint=fingerprint)

        def fail(reason, msg):
            result.update(failed=True, reason=reason, msg=msg)
            return result

        try:
            cache = jwks_cache_for(url, ca_pem, args["timeout"])
            claims = verify_token(token, cache, PROVISION_TYP, issuer=str(args["issuer"]),
                                  audience=str(args["audience"]), leeway=args["leeway"],
                                  max_ttl=args["max_ttl"])
        except TokenRefused as e:
            return fail(e.reason, str(e))
        except JwksError as e:
            return fail("jwks_unavailable", "cannot verify the token (fingerprint sha256:%s...): %s"
                        % (fingerprint[:16], e.message))
        except ControlPlaneError as e:  # a bad URL or CA, reported by the client's constructor
            return fail(e.code, "cannot reach the control plane: %s" % e)

        try:
            client = ControlPlaneClient(url, ca_pem=ca_pem, timeout=args["timeout"])
            answer = client.post(VALIDATE_PATH, {"token": token})
        except ControlPlaneError as e:
            if e.status == 0:
                return fail(e.code, "the control plane could not validate the token (fingerprint sha256:%s...): %s"
                            % (fingerprint[:16], e))
            return fail(e.code, "the control plane refused the token (%s): %s (fingerprint sha256:%s...)"
                        % (e.code, e.message, fingerprint[:16]))

        if answer.get("valid") is not True or answer.get("fingerprint", fingerprint) != fingerprint:
            return fail("bad_response", "the control plane's validation answer does not confirm this token "
                        "(fingerprint sha256:%s...)" % fingerprint[:16])
        if answer.get("user", claims["sub"]) != claims["sub"]:
            return fail("bad_response", "the control plane names another user for this token "
                        "(fingerprint sha256:%s...)" % fingerprint[:16])
        status = answer.get("status")
        if status not in ("unused", "redeemed", "finished"):
            return fail("bad_response", "the control plane answered an unknown token status")

        result.update(
            profile=answer.get("profile", claims.get("profile")),
            user=claims["sub"],
            expires_at=int(claims["exp"]),
            kid=unverified_header(token)["kid"],  # the header verify_token has just checked
            status=status,
            manifest=answer.get("manifest", []),
        )
        return result
