#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module is implemented by the action plugin plugins/action/token_mint.py and runs entirely
# on the controller; this file holds its documentation only.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: token_mint
short_description: Mint a provisioning token on the controller with an enrollment key
version_added: 0.1.0
description:
  - Asks the control plane for a new single-use provisioning token (C(POST /v1/tokens)), authenticated
    with an enrollment key. An enrollment key can only mint tokens, only for the one profile and user it
    was created for, until it expires or is revoked (C(bs-controlplane enrollment-key new|revoke)).
  - This is how a job template that targets many hosts and is relaunched provisions them without
    holding single-use tokens; run once per host, it gives each host a token of its own.
  - The control plane records C(token.minted) with the enrollment key's id (never its value) as the actor.
  - The result holds the token for the next tasks and is marked C(no_log) by the module itself, so it is
    shown censored at every verbosity and in AWX job events. Pass RV(token) only to options that are
    C(no_log) (those of M(bootstrap_saas.provisioning.token_verify) and M(bootstrap_saas.provisioning.token_redeem)).
  - A refusal (revoked or expired key, another profile or user) is not censored and names the rule.
author:
  - Bootstrap SaaS maintainers (!UNKNOWN)
options:
  url:
    description: Base URL of the control plane, V(https://HOST[:PORT]).
    type: str
    required: true
  enrollment_key:
    description: The enrollment key. It is a secret and is never logged or returned.
    type: str
    required: true
  token:
    description:
      - A provisioning token given as well. Always refused, with O(enrollment_key), so that a play
        setting both fails instead of guessing which one was meant.
    type: str
  ca_path:
    description:
      - Path B(on the controller) to a PEM file with the CA certificate(s) that signed the control
        plane's TLS certificate.
      - When omitted, the system trust store is used.
    type: path
  profile:
    description:
      - The profile to mint for. The key's own profile when omitted; any other is refused.
    type: str
  user:
    description:
      - The control-plane user to mint for. The key's own user when omitted; any other is refused.
    type: str
  ttl:
    description: Lifetime of the token in seconds. The control plane's default (1 h) when omitted.
    type: int
  timeout:
    description: Timeout in seconds for the request to the control plane.
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
    description: Runs once per host, and mints one token for each.
    support: none
  connection:
    description: Does not connect to the host.
    support: none
  check_mode:
    description:
      - Mints in check mode too, so that the next task can describe what the profile would write;
        nothing redeems the token in check mode and it expires unused.
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
  - Revoking the enrollment key stops further minting; tokens already minted stay valid until they
    are redeemed or expire.
seealso:
  - module: bootstrap_saas.provisioning.token_verify
  - module: bootstrap_saas.provisioning.token_redeem
"""

EXAMPLES = r"""
- name: Mint this host's token with the enrollment key that an AWX credential injects
  bootstrap_saas.provisioning.token_mint:
    url: "{{ lookup('ansible.builtin.env', 'BOOTSTRAP_SAAS_URL') }}"
    ca_path: "{{ lookup('ansible.builtin.env', 'BOOTSTRAP_SAAS_CA_PATH') }}"
    enrollment_key: "{{ lookup('ansible.builtin.env', 'BOOTSTRAP_SAAS_ENROLLMENT_KEY') }}"
    ttl: 900
  register: minted

- name: Verify it (the token option is no_log)
  bootstrap_saas.provisioning.token_verify:
    url: "{{ lookup('ansible.builtin.env', 'BOOTSTRAP_SAAS_URL') }}"
    ca_path: "{{ lookup('ansible.builtin.env', 'BOOTSTRAP_SAAS_CA_PATH') }}"
    token: "{{ minted.token }}"
"""

RETURN = r"""
token:
  description:
    - The new provisioning token. A secret; the result is censored in output, pass it only to C(no_log) options.
  returned: success
  type: str
fingerprint:
  description: Lower-case hex SHA-256 of the token, the form in which later tasks and the audit trail name it.
  returned: success
  type: str
  sample: 3f2a9c0d5e6b7a8f90e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b
expires_at:
  description: Expiry of the token in seconds since the epoch.
  returned: success
  type: int
  sample: 1796000000
reason:
  description:
    - The control plane's error code when it refused, for example V(enrollment_key_revoked),
      V(enrollment_key_expired), V(enrollment_key_out_of_scope) or V(unauthorized); V(unreachable) when
      it could not be reached.
  returned: failure
  type: str
  sample: enrollment_key_revoked
"""
