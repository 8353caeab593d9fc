#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: audit_event
short_description: Post the run's closing audit event
version_added: 0.1.0
description:
  - Posts an audit event for the run that P(bootstrap_saas.provisioning.token_redeem#module) recorded
    on the host, with the run token kept there.
  - V(run.finished) finishes the run; the control plane revokes the run token, and the host records
    the run as finished in C(~/.config/bootstrap-saas/run.json), so that the same provisioning token
    is not redeemed again by this host.
  - The event id is deterministic, so a repeated post is acknowledged, not recorded twice.
author:
  - Bootstrap SaaS maintainers (!UNKNOWN)
extends_documentation_fragment:
  - bootstrap_saas.provisioning.connection.run
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Posts nothing and changes nothing; reports whether the event would be posted.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  type:
    description:
      - The event type.
    type: str
    choices: [run.finished]
    default: run.finished
  data:
    description:
      - Summary data for the event, for example counts of files written.
      - Must not carry secrets, keys or file content; the audit trail is permanent.
    type: dict
    default: {}
  task:
    description:
      - Name of the task recorded with the event.
    type: str
    default: audit_event
seealso:
  - module: bootstrap_saas.provisioning.token_redeem
  - module: bootstrap_saas.provisioning.home_files
"""

EXAMPLES = r"""
- name: Finish the run
  bootstrap_saas.provisioning.audit_event:
    user: alice
    type: run.finished
    data:
      files: "{{ written.files | length }}"
      changed: "{{ written.files | selectattr('changed') | list | length }}"
"""

RETURN = r"""
run_id:
  description: The run the event belongs to.
  returned: success
  type: str
finished:
  description: Whether the run is recorded as finished on the host.
  returned: success
  type: bool
receipt:
  description: The control plane's receipt for the event.
  returned: when the event was posted
  type: dict
  contains:
    id: {description: Event id, type: str}
    seq: {description: Sequence number in the audit trail, type: int}
    hash: {description: Chain hash of the event, type: str}
    duplicate: {description: True when the event had been recorded before, type: bool}
"""

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_module import (
    Failure, run_agent_module)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_state import (
    RUN, AgentState, display_path)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import (
    AuditClient, AuditUndelivered, make_event)


def post(module, writer, account):
    p = module.params
    state = AgentState(writer)
    run = state.run()
    if not run and module.check_mode:
        # token_redeem redeems nothing in check mode, so there is no run yet: report what would be posted.
        return dict(changed=True, run_id=None, finished=False, msg="would post %s for the run to come" % p["type"])
    if not run:
        raise Failure("no redeemed run for %s: %s is missing; run bootstrap_saas.provisioning.token_redeem first"
                      % (account.pw_name, display_path(RUN)))
    run_id = run.get("run_id")
    if run.get("finished"):
        return dict(changed=False, run_id=run_id, finished=True, msg="run %s already finished" % run_id)
    if module.check_mode:
        return dict(changed=True, run_id=run_id, finished=False, msg="would post %s for run %s" % (p["type"], run_id))

    audit = AuditClient.for_run(run, state, p["timeout"])
    event = make_event(run_id, p["task"], p["type"], run_id, p["data"] or {})
    try:
        receipts = audit.deliver([event])
    except AuditUndelivered as e:
        if p["type"] == "run.finished" and e.cause.status == 410:
            # The run token is revoked only by run.finished: the run is over (perhaps our own
            # earlier post, whose answer was lost). Record it, and still fail: no receipt came back.
            run["finished"] = True
            state.save_run(run)
        raise Failure(str(e), run_id=run_id, code=e.cause.code, spooled=e.spooled)
    if p["type"] == "run.finished":
        run["finished"] = True
        state.save_run(run)
    return dict(changed=True, run_id=run_id, finished=bool(run.get("finished")), receipt=receipts[0])


# The account options (user, allow_system_user, timeout) come from _agent_module.ACCOUNT_OPTIONS.
OPTIONS = dict(
    type=dict(type="str", choices=["run.finished"], default="run.finished"),
    data=dict(type="dict", default={}),
    task=dict(type="str", default="audit_event"),
)


def main():
    run_agent_module(OPTIONS, post)


if __name__ == "__main__":
    main()
