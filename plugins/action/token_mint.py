# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of bootstrap_saas.provisioning.token_mint (documented in plugins/modules/token_mint.py)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.bootstrap_saas.provisioning.plugins.action.token_verify import _read_ca
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient,
    ControlPlaneError,
    token_fingerprint,
)

MINT_PATH = "/v1/tokens"

ARGUMENT_SPEC = {
    "url": {"type": "str", "required": True},
    "enrollment_key": {"type": "str", "required": True, "no_log": True},
    # Taken only to be refused: a play that sets both a token and an enrollment key is an error,
    # not a guess about which one was meant.
    "token": {"type": "str", "no_log": True},
    "ca_path": {"type": "path"},
    "profile": {"type": "str"},
    "user": {"type": "str"},
    "ttl": {"type": "int"},
    "timeout": {"type": "int", "default": 30},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    # Check mode mints too: the next task needs a token to ask the control plane what the profile
    # would write. The token is never redeemed in check mode and expires unused.
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC,
                                                        mutually_exclusive=[("enrollment_key", "token")])

        # Tagged strings (ansible-core 2.19) become plain str before they reach ssl or urllib.
        url = str(args["url"]).strip().rstrip("/")
        key = str(args["enrollment_key"]).strip()
        ca_pem = _read_ca(str(args["ca_path"])) if args["ca_path"] else None
        body = {name: args[name] for name in ("profile", "user", "ttl") if args[name] is not None}

        try:
            answer = ControlPlaneClient(url, ca_pem=ca_pem, timeout=args["timeout"]).post(MINT_PATH, body, bearer=key)
        except ControlPlaneError as e:
            result.update(failed=True, changed=False, reason=e.code)
            if e.status == 0:
                result["msg"] = "cannot reach the control plane to mint a token: %s" % e
            else:
                result["msg"] = "the control plane refused to mint a token with this enrollment key (%s): %s" % (
                    e.code, e.message)
            return result

        token = answer.get("token")
        if not isinstance(token, str) or not token or answer.get("fingerprint") != token_fingerprint(token):
            result.update(failed=True, changed=False, reason="bad_response",
                          msg="the control plane's mint answer carries no token matching its fingerprint")
            return result
        # The token must reach the next tasks, so it is in this result, and the result marks itself
        # no_log: every callback (stdout at any verbosity, AWX job events) shows it censored, while a
        # refusal above stays readable. The next tasks take it through their no_log token options.
        result.update(changed=True, token=token, fingerprint=answer["fingerprint"],
                      expires_at=int(answer["expires_at"]), _ansible_no_log=True)
        return result
