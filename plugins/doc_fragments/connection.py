# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The control-plane connection: for modules and plugins that are told where the control plane is.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the control plane, for example V(https://cp.example.com:8443).
      - Only C(https) is accepted; the certificate is always verified, host name included.
    type: str
    required: true
  ca_pem:
    description:
      - PEM text of the CA certificate(s) that the control plane's certificate must chain to.
      - When omitted, the system trust store of the machine making the request is used.
      - The controller passes the CA it was given; nothing has to be copied onto the host first.
    type: str
  timeout:
    description:
      - Seconds to wait for each request to the control plane.
    type: int
    default: 30
"""

    # For modules that act for a run already redeemed on the host: the control plane's URL, its CA
    # and the run token come from the agent state that token_redeem wrote.
    RUN = r"""
options:
  user:
    description:
      - Local account whose home holds the agent state (C(~/.config/bootstrap-saas/)).
      - The home comes from the password database. V(root) and system accounts are refused unless
        O(allow_system_user=true).
    type: str
    required: true
  allow_system_user:
    description:
      - Allow O(user) to be V(root) or a system account (UID below C(UID_MIN)).
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for each request to the control plane.
      - The control plane's URL and CA are those recorded by P(bootstrap_saas.provisioning.token_redeem#module).
    type: int
    default: 30
notes:
  - Audit events that an earlier task could not deliver are spooled in C(~/.config/bootstrap-saas/spool.jsonl);
    this module delivers them first and fails, leaving them spooled, if that is not possible.
"""
