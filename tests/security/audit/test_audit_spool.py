"""The host's spool: a task that cannot deliver fails closed saying how many events are spooled and
where; the next call of a module delivers the spool first, also when the run it belongs to has ended.

The modules run as real processes (`ansible localhost -m ...`) for a real account; the control plane
is really stopped and started again, behind the fault proxy, which keeps its address stable.
"""
import json
import stat
import sys
from pathlib import Path

import pytest

from audit_support import FaultProxy
from helpers.controlplane import ControlPlane
from helpers.e2e import ThrowawayUser

# The module tests' runner, reused from wherever the module tests live.
sys.path.insert(0, str(next(Path(__file__).resolve().parents[2].glob("**/module_runner.py")).parent))
from module_runner import ModuleRunner  # noqa: E402

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import make_event  # noqa: E402
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (  # noqa: E402
    ControlPlaneClient)

PROFILE = {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "export EDITOR=vi\n"},
                     {"path": "~/.config/git/config", "mode": "0644", "content": "[user]\n\tname = A\n"}]}
SPOOL = "~/.config/bootstrap-saas/spool.jsonl"


@pytest.fixture
def cp(tmp_path):
    cp = ControlPlane(tmp_path / "data").init()
    cp.set_profile("dev", PROFILE)
    cp.start()
    cp.ca_pem = cp.ca_path.read_text()
    yield cp
    cp.stop()


def spool_of(user):
    path = user.home / ".config" / "bootstrap-saas" / "spool.jsonl"
    return path, [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def redeem(cp, proxy, run_module, user):
    result = run_module("token_redeem", {"url": proxy.url, "ca_pem": cp.ca_pem, "token": cp.mint("dev", "alice"),
                                         "user": user.name, "timeout": 5})
    assert result.status == "ok", result.output
    return result


def test_undeliverable_events_fail_closed_and_wait_for_the_next_run_after_theirs_ended(cp, tmp_path):
    run_module = ModuleRunner(tmp_path)
    proxy = FaultProxy(tmp_path, cp)
    try:
        undeliverable_then_delivered(cp, proxy, run_module)
    finally:
        proxy.stop()


def undeliverable_then_delivered(cp, proxy, run_module):
    with ThrowawayUser(prefix="bs-spool") as user:
        first = redeem(cp, proxy, run_module, user)
        run_a = first["run_id"]

        cp.stop()  # the control plane goes away in the middle of the run
        written = run_module("home_files", {"user": user.name, "timeout": 5})
        assert written.failed and "the files were written but" in written["msg"]
        assert "3 event(s) are spooled in %s" % SPOOL in written["msg"] and written["spooled"] == 3
        path, spooled = spool_of(user)
        assert [e["type"] for e in spooled] == ["file.written", "file.written", "task.completed"]
        assert {e["run_id"] for e in spooled} == {run_a}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == user.pw.pw_uid
        assert (user.home / ".zshrc").read_text() == PROFILE["files"][0]["content"]

        # Run A ends while its events wait on the host (its run.finished arrives from elsewhere).
        cp.start()
        proxy.point_at(cp)
        run_token = json.loads((user.home / ".config/bootstrap-saas/run.json").read_text())["run_token"]
        ControlPlaneClient(cp.url, cp.ca_pem, 10).post("/v1/audit/events", {"events": [
            make_event(run_a, "elsewhere", "run.finished", run_a, {})]}, bearer=run_token)

        # The next module call: run A's token is revoked, so the spool waits for the new run's token,
        # under which the control plane accepts the events of an earlier run of the same machine.
        second = redeem(cp, proxy, run_module, user)
        assert second["run_id"] != run_a
        assert spool_of(user)[1] == []
        stored = {e["id"]: e for e in cp.audit()}
        for event in spooled:
            assert stored[event["id"]]["run_id"] == run_a and stored[event["id"]]["type"] == event["type"]
        assert [e["run_id"] for e in stored.values() if e["task"] == "token_redeem"] == [run_a, second["run_id"]]

        cp.stop()  # and a module whose own post fails says how many are waiting, counting the spool
        again = run_module("audit_event", {"user": user.name, "timeout": 5})
        assert again.failed and "1 event(s) are spooled in %s" % SPOOL in again["msg"], again["msg"]
        cp.start()
        proxy.point_at(cp)
        done = run_module("audit_event", {"user": user.name, "timeout": 5})
        assert done.status == "ok" and done["finished"] is True and spool_of(user)[1] == []
        assert done["receipt"]["duplicate"] is True  # delivered from the spool first, then acknowledged again
        assert len([e for e in cp.audit() if e["type"] == "run.finished" and e["run_id"] == second["run_id"]]) == 1
