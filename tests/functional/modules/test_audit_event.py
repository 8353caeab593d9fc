"""audit_event as a real process against a real control plane, for a real throwaway account."""
from module_runner import CP_USER, events_of, read_state, redeem_args

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import event_id
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient, ControlPlaneError)


def test_run_finished_finishes_the_run_once(controlplane, account, run_module):
    redeemed = run_module("token_redeem", redeem_args(controlplane, controlplane.mint("dev", CP_USER), account))
    run_id = redeemed["run_id"]
    run_token = read_state(account, "run.json")["run_token"]

    check = run_module("audit_event", {"user": account.name, "data": {"files": 4}}, check=True)
    assert check.status == "ok" and check["changed"] is True
    assert not [e for e in events_of(controlplane, run_id) if e["type"] == "run.finished"]

    result = run_module("audit_event", {"user": account.name, "type": "run.finished", "data": {"files": 4}})
    assert result.status == "ok", result.output
    assert result["changed"] is True and result["finished"] is True
    assert result["receipt"]["id"] == event_id(run_id, "audit_event", "run.finished", run_id)
    finished = [e for e in events_of(controlplane, run_id) if e["type"] == "run.finished"]
    assert len(finished) == 1 and finished[0]["data"] == {"files": 4}
    assert read_state(account, "run.json")["finished"] is True
    assert run_token not in result.output

    # The run token is revoked by the control plane.
    client = ControlPlaneClient(controlplane.url, controlplane.ca_pem, 10)
    try:
        client.get("/v1/credentials/ssh_key", bearer=run_token)
        raise AssertionError("the run token still works")
    except ControlPlaneError as e:
        assert e.status in (401, 410)

    again = run_module("audit_event", {"user": account.name, "data": {"files": 4}})
    assert again.status == "ok" and again["changed"] is False
    assert len([e for e in events_of(controlplane, run_id) if e["type"] == "run.finished"]) == 1


def test_without_a_run_it_says_what_to_do(account, run_module):
    result = run_module("audit_event", {"user": account.name})
    assert result.failed
    assert "~/.config/bootstrap-saas/run.json is missing; run bootstrap_saas.provisioning.token_redeem" in result["msg"]
    bad = run_module("audit_event", {"user": account.name, "type": "task.completed"})
    assert bad.failed and "run.finished" in bad["msg"]
