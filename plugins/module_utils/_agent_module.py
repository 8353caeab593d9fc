# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the host-side modules share: the account options, the home writer, and one way of turning
a refusal into a failed task."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_state import StateError
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import AuditUndelivered
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneError
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._safe_write import (
    AccountRefused, HomeWriter, WriteRefused, resolve_account)

# Documented once in the doc fragment bootstrap_saas.provisioning.connection.run.
ACCOUNT_OPTIONS = dict(
    user=dict(type="str", required=True),
    allow_system_user=dict(type="bool", default=False),
    timeout=dict(type="int", default=30),
)

REFUSALS = (AccountRefused, StateError, WriteRefused, AuditUndelivered, ControlPlaneError)


class Failure(Exception):
    """A refusal with the result fields the failed task should carry."""

    def __init__(self, msg, **result):
        self.msg = msg
        self.result = result
        super(Failure, self).__init__(msg)


def run_agent_module(options, work):
    """Run work(module, writer, account) in the target user's home and exit the module with its result."""
    module = AnsibleModule(argument_spec=dict(ACCOUNT_OPTIONS, **options), supports_check_mode=True)
    # fail_json is called outside the except clauses: inside one, Ansible reports a traceback.
    failure = None
    try:
        account = resolve_account(module.params["user"], allow_system_user=module.params["allow_system_user"])
        with HomeWriter(account) as writer:
            result = work(module, writer, account)
    except Failure as e:
        failure = dict(e.result, msg=e.msg)
    except REFUSALS as e:
        failure = dict(msg=str(e))
    if failure is not None:
        module.fail_json(**failure)
    module.exit_json(**result)
