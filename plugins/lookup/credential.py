# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: credential
short_description: Decrypt Bootstrap SaaS credential envelopes on the controller
version_added: 0.1.0
description:
  - Returns the plaintext of the named credentials, decrypted on the controller with the user's key.
    Each credential is a JWE envelope (C(alg dir), C(enc A256GCM)) whose protected header names the
    key (C(kid)), the credential and the user. The name and the user are checked before decrypting.
  - "Envelopes come from, per term and in this order: O(envelopes) (for example the C(credentials) that
    M(bootstrap_saas.provisioning.token_redeem) returned), O(envelope) or O(src) (one term only), or
    the control plane (C(GET /v1/credentials/NAME)) with O(url) and O(run_token)."
  - "The user key comes from, in this order: O(user_key), O(user_key_file), then the environment
    variable E(BOOTSTRAP_SAAS_USER_KEY) (what an AWX credential injects). An empty value counts as
    unset. The key is never read from an ini file."
  - The values returned are marked unsafe and are never templated, so a credential holding
    C({{ ... }}) comes out literally.
  - "Error messages say which check failed (malformed envelope, name mismatch, user mismatch, unknown key id,
    wrong key or tampered data, not found, forbidden, unreachable) and never contain a key or a plaintext."
author:
  - Bootstrap SaaS maintainers (!UNKNOWN)
requirements:
  - cryptography >= 41 on the controller
options:
  _terms:
    description: Names of the credentials to decrypt.
    type: list
    elements: str
    required: true
  envelopes:
    description: Envelopes by credential name (compact JWE strings). Ciphertext, safe to pass around.
    type: dict
  envelope:
    description: One envelope (compact JWE), for a single term.
    type: str
  src:
    description:
      - Path on the controller to a file holding one envelope, for a single term.
      - 'The file holds the compact JWE, or the control plane JSON answer C({"name": ..., "envelope": ...}).'
    type: str
  url:
    description: Base URL of the control plane, to fetch envelopes that are not given otherwise.
    type: str
  ca_path:
    description: Path on the controller to the PEM CA file that the control plane's certificate chains to.
    type: str
  run_token:
    description: The run token (from M(bootstrap_saas.provisioning.token_redeem)) used to fetch envelopes.
    type: str
  timeout:
    description: Timeout in seconds for each request to the control plane.
    type: int
    default: 30
  user:
    description:
      - The control-plane user the credentials must belong to; compared with the envelope's C(bs_user).
      - When omitted, the user is not compared (the per-user key still has to fit).
    type: str
  user_key:
    description:
      - 'The user key as JWK set JSON, C({"keys": [{"kty": "oct", "kid": ..., "k": ...}]}), or a single JWK.'
      - A key ring may hold several keys (old and new ones during a key rotation); each envelope's C(kid) picks its key.
      - A secret; the first of O(user_key), O(user_key_file) and E(BOOTSTRAP_SAAS_USER_KEY) that is set is used.
    type: str
  user_key_file:
    description: Path on the controller to a file holding the user's key (same format as O(user_key)).
    type: str
notes:
  - Paths (O(src), O(ca_path), O(user_key_file)) are on the controller; C(~) is expanded and a relative
    path is taken from the current directory. An empty path counts as unset.
  - "Put C(no_log: true) on tasks whose output would show a decrypted credential."
seealso:
  - module: bootstrap_saas.provisioning.token_redeem
"""

EXAMPLES = r"""
- name: Decrypt the envelopes that token_redeem returned
  ansible.builtin.set_fact:
    ssh_key: "{{ lookup('bootstrap_saas.provisioning.credential', 'ssh_key',
                 envelopes=redeemed.credentials, user='alice', user_key_file='~/.config/bootstrap-saas/alice.key') }}"
  no_log: true

- name: Fetch and decrypt two credentials, key from BOOTSTRAP_SAAS_USER_KEY (an AWX credential)
  ansible.builtin.set_fact:
    secrets: "{{ query('bootstrap_saas.provisioning.credential', 'ssh_key', 'api_token',
                 url=cp_url, ca_path=cp_ca, run_token=redeemed.run_token, user='alice') }}"
  no_log: true

- name: Offline, from a file holding one envelope
  ansible.builtin.set_fact:
    api_token: "{{ lookup('bootstrap_saas.provisioning.credential', 'api_token', src='files/api_token.jwe') }}"
  no_log: true
"""

RETURN = r"""
_raw:
  description: One plaintext string per term, in order; marked unsafe so that it is never templated.
  type: list
  elements: str
"""

import json
import os

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.lookup import LookupBase
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient,
    ControlPlaneError,
)
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._jwks import missing_libraries
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._envelope import (
    EnvelopeError,
    decrypt_envelope,
    load_key_ring,
)

KEY_ENV = "BOOTSTRAP_SAAS_USER_KEY"

_REASONS = {
    "malformed": "malformed envelope",
    "unknown_kid": "unknown key id",
    "decrypt_failed": "wrong key or tampered data",
    "name_mismatch": "name mismatch",
    "user_mismatch": "user mismatch",
    "bad_key": "unusable user key",
}


def _set(value):
    """An option value as plain str, or None when unset or empty (tagged strings become str)."""
    if value is None:
        return None
    value = str(value)
    return value if value.strip() else None


def _read_file(path, what):
    try:
        with open(os.path.expanduser(path), "r", encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        # The OS error names the path and the problem, never the content.
        raise AnsibleLookupError("credential lookup: cannot read %s %s: %s"
                                 % (what, path, to_text(getattr(e, "strerror", None) or type(e).__name__))) from None


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if missing_libraries("cryptography"):
            raise AnsibleLookupError("credential lookup: needs the cryptography library on the controller")
        names = [str(term) for term in terms]
        if not names:
            raise AnsibleLookupError("credential lookup: give at least one credential name")
        ring = self._key_ring()
        user = _set(self.get_option("user"))
        envelopes = self.get_option("envelopes") or {}
        single = _set(self.get_option("envelope"))
        src = _set(self.get_option("src"))
        if (single or src) and len(names) != 1:
            raise AnsibleLookupError("credential lookup: envelope and src hold one envelope; give exactly one name")
        if single and src:
            raise AnsibleLookupError("credential lookup: give envelope or src, not both")

        values = []
        for name in names:
            if name in envelopes and _set(envelopes[name]):
                compact = str(envelopes[name])
            elif single:
                compact = single
            elif src:
                compact = self._from_file(src)
            else:
                compact = self._fetch(name, bool(envelopes))
            try:
                plaintext = decrypt_envelope(compact, ring, name, user)
            except EnvelopeError as e:
                raise AnsibleLookupError("credential lookup: credential %r refused (%s): %s"
                                         % (name, _REASONS.get(e.reason, e.reason), e.message)) from None
            values.append(wrap_var(plaintext))
        return values

    def _key_ring(self):
        text = _set(self.get_option("user_key"))
        source = "user_key"
        if text is None:
            key_file = _set(self.get_option("user_key_file"))
            if key_file is not None:
                text, source = _read_file(key_file, "user_key_file"), "user_key_file %s" % key_file
        if text is None:
            text, source = _set(os.environ.get(KEY_ENV)), "environment variable %s" % KEY_ENV
        if text is None:
            raise AnsibleLookupError("credential lookup: no key given: set user_key, user_key_file or the "
                                     "environment variable %s" % KEY_ENV)
        try:
            return load_key_ring(text)
        except EnvelopeError as e:
            raise AnsibleLookupError("credential lookup: the key from %s is unusable: %s" % (source, e.message)) from None

    @staticmethod
    def _from_file(src):
        text = _read_file(src, "src").strip()
        if text.startswith("{"):
            try:
                text = json.loads(text)["envelope"]
            except (ValueError, KeyError, TypeError):
                raise AnsibleLookupError("credential lookup: src %s is JSON without an \"envelope\" string" % src) from None
        return str(text)

    def _fetch(self, name, had_envelopes):
        url = _set(self.get_option("url"))
        run_token = _set(self.get_option("run_token"))
        if url is None or run_token is None:
            raise AnsibleLookupError("credential lookup: credential %r not found: %s; give envelopes, envelope, src, "
                                     "or url and run_token to fetch it"
                                     % (name, "it is not in envelopes" if had_envelopes else "no envelope given"))
        ca_path = _set(self.get_option("ca_path"))
        ca_pem = _read_file(ca_path, "ca_path") if ca_path else None
        try:
            client = ControlPlaneClient(url, ca_pem=ca_pem, timeout=self.get_option("timeout"))
            answer = client.get("/v1/credentials/" + ControlPlaneClient.quote(name), bearer=run_token)
        except ControlPlaneError as e:
            if e.status == 0:
                what = "unreachable"
            elif e.status == 404:
                what = "not found"
            elif e.status == 403:
                what = "forbidden"
            else:
                what = "refused"
            raise AnsibleLookupError("credential lookup: credential %r: control plane %s (%s)" % (name, what, e)) from None
        envelope = answer.get("envelope")
        if answer.get("name", name) != name or not isinstance(envelope, str):
            raise AnsibleLookupError("credential lookup: credential %r: the control plane's answer holds no "
                                     "envelope for that name" % name)
        return envelope
