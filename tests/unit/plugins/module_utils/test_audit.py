"""The audit client: deterministic ids, one batched POST, bounded retry, durable spool delivered first.

Real parts throughout: a real control plane over HTTPS, a real closed port, a real throwaway account
whose home holds the spool (written through HomeWriter, with that account's identity).
"""
import hashlib
import json
import socket
import stat
import time

import pytest

from helpers.controlplane import ControlPlane
from helpers.e2e import ThrowawayUser

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_state import AgentState
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import (
    AuditClient, AuditUndelivered, event_id, make_event)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._safe_write import HomeWriter


def start_cp(workdir, *args):
    cp = ControlPlane(workdir)
    cp.init()
    cp.set_profile("dev", {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "x\n"}]})
    cp.start(*args)
    cp.ca_pem = cp.ca_path.read_text()
    return cp


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    cp = start_cp(tmp_path_factory.mktemp("cp") / "data")
    yield cp
    cp.stop()


@pytest.fixture
def state():
    with ThrowawayUser(prefix="bs-audit") as user:
        with HomeWriter(user.pw) as writer:
            s = AgentState(writer)
            s.user = user
            yield s


def redeem(cp, state, client=None):
    client = client or ControlPlaneClient(cp.url, cp.ca_pem, 10)
    answer = client.post("/v1/tokens/redeem", {
        "token": cp.mint("dev", "alice"),
        "machine": {"id": "test-machine", "hostname": "test-host", "user": state.user.name},
        "machine_secret_hash": state.machine_secret_hash()})
    return answer["run_id"], answer["run_token"]


def unreachable_client():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return ControlPlaneClient("https://127.0.0.1:%d" % port, None, timeout=5)


def spool_lines(state):
    path = state.user.home / ".config" / "bootstrap-saas" / "spool.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_event_ids_are_deterministic():
    expected = hashlib.sha256(b"run1|home_files|file.written|~/.zshrc").hexdigest()[:32]
    assert event_id("run1", "home_files", "file.written", "~/.zshrc") == expected
    event = make_event("run1", "home_files", "file.written", "~/.zshrc", {"mode": "0644"})
    assert event == {"id": expected, "type": "file.written", "run_id": "run1", "task": "home_files",
                     "subject": "~/.zshrc", "data": {"mode": "0644"}}
    assert make_event("run1", "home_files", "file.unchanged", "~/.zshrc")["id"] != expected
    with pytest.raises(ValueError):
        make_event("run1", "t", "token.minted", "s")


def test_unreachable_server_spools_after_bounded_retries(state):
    sleeps = []
    events = [make_event("run-a", "home_files", "file.written", "~/.zshrc", {"mode": "0644"}),
              make_event("run-a", "home_files", "task.completed", "dev", {"files": 1})]
    audit = AuditClient(unreachable_client(), "some-run-token", state, sleep=sleeps.append)
    with pytest.raises(AuditUndelivered) as e:
        audit.deliver(events)
    assert sleeps == [0.5, 1.0, 2.0]
    assert "2 event(s) are spooled in ~/.config/bootstrap-saas/spool.jsonl" in str(e.value)
    assert "unreachable" in str(e.value) and "some-run-token" not in str(e.value)
    assert e.value.spooled == 2 and e.value.cause.code == "unreachable"
    assert spool_lines(state) == events
    spool = state.user.home / ".config" / "bootstrap-saas" / "spool.jsonl"
    assert stat.S_IMODE(spool.stat().st_mode) == 0o600 and spool.stat().st_uid == state.user.pw.pw_uid
    assert stat.S_IMODE(spool.parent.stat().st_mode) == 0o700

    # Still unreachable: the spool is kept, the new batch joins it, the count says so.
    with pytest.raises(AuditUndelivered) as e:
        audit.deliver([make_event("run-a", "audit_event", "run.finished", "run-a")])
    assert "3 event(s) are spooled" in str(e.value) and len(spool_lines(state)) == 3


def test_the_spool_is_delivered_first_on_the_next_call(cp, state):
    run_id, run_token = redeem(cp, state)
    spooled = [make_event(run_id, "home_files", "file.written", "~/.zshrc", {"mode": "0644"}),
               make_event(run_id, "home_files", "task.completed", "dev", {"files": 1})]
    with pytest.raises(AuditUndelivered):
        AuditClient(unreachable_client(), run_token, state, delays=()).deliver(spooled)

    audit = AuditClient(ControlPlaneClient(cp.url, cp.ca_pem, 10), run_token, state)
    batch = [make_event(run_id, "audit_event", "run.finished", run_id, {"files": 1})]
    receipts = audit.deliver(batch)
    assert [r["id"] for r in receipts] == [batch[0]["id"]] and receipts[0]["duplicate"] is False
    assert [r["id"] for r in audit.spool_receipts] == [e["id"] for e in spooled]
    assert spool_lines(state) == []
    stored = [e for e in cp.audit() if e["run_id"] == run_id and e["type"] in ("file.written", "task.completed",
                                                                               "run.finished")]
    assert [e["id"] for e in stored] == [e["id"] for e in spooled + batch]
    assert audit.deliver([]) == []  # nothing spooled, nothing to send


def test_spooled_events_keep_their_own_run(cp, state):
    old_run, old_token = redeem(cp, state)
    early = make_event(old_run, "home_files", "task.completed", "dev", {"files": 1})
    with pytest.raises(AuditUndelivered):
        AuditClient(unreachable_client(), old_token, state, delays=()).deliver([early])
    new_run, new_token = redeem(cp, state)  # same machine secret: the same machine binding
    audit = AuditClient(ControlPlaneClient(cp.url, cp.ca_pem, 10), new_token, state)
    audit.deliver([make_event(new_run, "home_files", "task.completed", "dev", {"files": 1})])
    by_id = {e["id"]: e for e in cp.audit()}
    assert by_id[early["id"]]["run_id"] == old_run


def test_duplicates_are_acknowledged_not_stored_twice(cp, state):
    run_id, run_token = redeem(cp, state)
    audit = AuditClient(ControlPlaneClient(cp.url, cp.ca_pem, 10), run_token, state)
    event = make_event(run_id, "home_files", "file.unchanged", "~/.zshrc", {"mode": "0644"})
    first = audit.deliver([event])[0]
    again = audit.deliver([dict(event)])[0]
    assert again["duplicate"] is True and (again["seq"], again["hash"]) == (first["seq"], first["hash"])
    assert [e["id"] for e in cp.audit()].count(event["id"]) == 1


def test_refusals_are_not_retried_and_are_spooled(cp, state):
    sleeps = []
    audit = AuditClient(ControlPlaneClient(cp.url, cp.ca_pem, 10), "not-a-run-token", state, sleep=sleeps.append)
    with pytest.raises(AuditUndelivered) as e:
        audit.deliver([make_event("run-x", "home_files", "task.completed", "dev")])
    assert sleeps == [] and e.value.cause.status == 401 and len(spool_lines(state)) == 1
    assert "not-a-run-token" not in str(e.value)


def test_rate_limit_is_retried_after_retry_after(tmp_path, state):
    cp = start_cp(tmp_path / "data", "--rate-limit", "1")
    try:
        client = ControlPlaneClient(cp.url, cp.ca_pem, 10)
        run_id, run_token = redeem(cp, state, client)
        waits = []

        def sleep(seconds):
            waits.append(seconds)
            time.sleep(seconds)

        audit = AuditClient(client, run_token, state, sleep=sleep)
        receipts = None
        for dummy in range(4):  # drain the bucket; the client waits as told and gets through
            receipts = audit.deliver([make_event(run_id, "home_files", "task.completed", "dev")])
        assert receipts[0]["duplicate"] is True
        assert waits and all(w >= 1 for w in waits)
    finally:
        cp.stop()


def test_an_id_stored_with_other_details_never_blocks_the_spool(cp, state):
    run_id, run_token = redeem(cp, state)
    audit = AuditClient(ControlPlaneClient(cp.url, cp.ca_pem, 10), run_token, state)
    audit.deliver([make_event(run_id, "home_files", "file.denied", "~/.zshrc", {"rule": "symlink"})])
    # A later call records the same fact (same id) with another rule, spooled behind an outage.
    conflicting = make_event(run_id, "home_files", "file.denied", "~/.zshrc", {"rule": "not-a-file"})
    with pytest.raises(AuditUndelivered):
        AuditClient(unreachable_client(), run_token, state, delays=()).deliver([conflicting])
    later = make_event(run_id, "home_files", "task.failed", "dev", {"denied": 1})
    receipts = audit.deliver([later])
    assert audit.spool_receipts[0]["conflict"] is True and audit.conflicts == [conflicting["id"]]
    assert receipts[0]["duplicate"] is False and spool_lines(state) == []
    stored = [e for e in cp.audit() if e["id"] == conflicting["id"]]
    assert len(stored) == 1 and stored[0]["data"] == {"rule": "symlink"}
