#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module is implemented by the action plugin plugins/action/token_verify.py and runs entirely
# on the controller; this file holds its documentation only.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: token_verify
short_description: Verify a provisioning token on the controller, without consuming it
version_added: 0.1.0
description:
  - Verifies a Bootstrap SaaS provisioning token on the controller, then asks the control plane
    whether it is genuine and unexpired (C(POST /v1/tokens/validate)). Nothing is consumed, so the task
    is safe in check mode and on reruns.
  - Local verification follows RFC 8725. Only RS256 is accepted, with the RSA key that the
    control plane's JWKS publishes for the token's C(kid). The header C(typ) must be V(bs-provision+jwt),
    and C(iss) and C(aud) must match exactly. C(exp), C(aud), C(jti), C(sub), C(iat) and C(iss) are required,
    time claims must be numbers, C(nbf) and C(iat) may not lie in the future by more than O(leeway), and
    C(exp - iat) may not exceed O(max_ttl). Tokens over 8192 bytes and badly formed C(kid)s are refused
    before any key lookup. C(jku), C(x5u), C(jwk) and C(x5c) are ignored, never fetched.
  - The JWKS is fetched over verified TLS and cached for the whole run, shared by every task and host
    that a worker process handles. An unknown C(kid) triggers at most one refetch per minute.
    If the JWKS cannot be fetched, verification fails closed; the task fails and no token is accepted.
  - A token that has already been redeemed is not a failure here. RV(status) says V(redeemed), and the
    host-side M(bootstrap_saas.provisioning.token_redeem) decides whether that was this machine.
  - The token is never shown in results, messages or verbose output; its SHA-256 fingerprint is.
author:
  - Bootstrap SaaS maintainers (!UNKNOWN)
requirements:
  - PyJWT >= 2.8 and cryptography >= 41 on the controller
options:
  url:
    description: Base URL of the control plane, V(https://HOST[:PORT]).
    type: str
    required: true
  token:
    description: The provisioning token to verify. It is a secret and is never logged or returned.
    type: str
    required: true
  ca_path:
    description:
      - Path B(on the controller) to a PEM file with the CA certificate(s) that signed the control
        plane's TLS certificate.
      - When omitted, the system trust store is used.
    type: path
  issuer:
    description: The issuer (C(iss)) that the token must name exactly.
    type: str
    default: bootstrap-saas
  audience:
    description: The audience (C(aud)) that the token must carry exactly (as the value or as one item of a list).
    type: str
    default: bootstrap-saas:provision
  leeway:
    description: Clock skew, in seconds, allowed for C(exp), C(nbf) and C(iat).
    type: int
    default: 30
  max_ttl:
    description: Longest lifetime (C(exp - iat)) in seconds that a token may have; keep it equal to the control plane's maximum.
    type: int
    default: 86400
  timeout:
    description: Timeout in seconds for each request to the control plane.
    type: int
    default: 30
attributes:
  action:
    description: Runs as an action plugin on the controller.
    support: full
  async:
    description: Cannot run asynchronously.
    support: none
  become:
    description: Does not use privilege escalation; nothing runs on the host.
    support: none
  bypass_host_loop:
    description: Runs once per host.
    support: none
  connection:
    description: Does not connect to the host.
    support: none
  check_mode:
    description: Runs the same in check mode; validation consumes nothing.
    support: full
  diff_mode:
    description: Produces no diff.
    support: none
  platform:
    description: Runs on the controller; the target host is not contacted.
    platforms: all
    support: full
notes:
  - The task needs no connection to the host and transfers nothing to it.
seealso:
  - module: bootstrap_saas.provisioning.token_redeem
"""

EXAMPLES = r"""
- name: Verify the provisioning token before touching the host
  bootstrap_saas.provisioning.token_verify:
    url: https://controlplane.example.com:8443
    ca_path: /etc/bootstrap-saas/ca.pem
    token: "{{ bootstrap_agent_token }}"
  register: verified

- name: Show what the profile would write (check mode works too)
  ansible.builtin.debug:
    msg: "{{ verified.profile }} for {{ verified.user }} ({{ verified.status }}): {{ verified.manifest | map(attribute='path') }}"
"""

RETURN = r"""
fingerprint:
  description: Lower-case hex SHA-256 of the token, the only form in which it is shown.
  returned: always
  type: str
  sample: 3f2a9c0d5e6b7a8f90e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b
profile:
  description: Name of the profile the token is for.
  returned: success
  type: str
  sample: dev
user:
  description: The control-plane user the token was minted for (its C(sub) claim).
  returned: success
  type: str
  sample: alice
expires_at:
  description: Expiry of the token in seconds since the epoch.
  returned: success
  type: int
  sample: 1796000000
kid:
  description: The signing key (C(kid)) that the token was verified with.
  returned: success
  type: str
  sample: k-20261203-1a2b
status:
  description: The token's state on the control plane.
  returned: success
  type: str
  choices: [unused, redeemed, finished]
  sample: unused
manifest:
  description: The profile's files as the control plane describes them (no content), for check mode.
  returned: success
  type: list
  elements: dict
  contains:
    path:
      description: Destination, always C(~/...).
      type: str
    mode:
      description: Octal mode as a string.
      type: str
    sha256:
      description: SHA-256 of the content; null for credentials.
      type: str
    credential:
      description: Name of the credential that supplies the content, or null.
      type: str
  sample: [{"path": "~/.zshrc", "mode": "0644", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "credential": null}]
reason:
  description:
    - Why the token was refused, for example V(expired), V(wrong_audience), V(unknown_key), or the control plane's error code.
    - V(missing) when no token was given at all.
  returned: failure
  type: str
  sample: expired
"""
