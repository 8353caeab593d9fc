"""The role against a real control plane that a driver stops, restarts, makes answer 500 and makes hang.

Four runs of the real playbook for one host and one token, each with faults at other points:

1. the redeem is processed but its answer is lost (late): token_redeem fails, nothing is spooled;
2. every audit post of token_redeem gets 500: its task.completed is spooled, the task fails closed;
3. the server is killed (SIGKILL) while token_redeem delivers the spool, and restarted while the
   retry waits; home_files' batch is committed but its answer lost (late); audit_event's post hangs
   twice, then gets 500 twice, so run.finished is spooled;
4. two 500s, then token_redeem delivers the spooled run.finished and reports the run finished.

After the last run the control plane holds exactly the expected events: none lost, none twice.
The faults come from faultproxy.py, a real process in front of the real server (see its docstring
for why it terminates TLS); the stop and the restart are the real server process's.
"""
import collections
import hashlib
import json
import threading
import time

import pytest

from audit_support import FaultProxy, leaks, secret_forms
from helpers.e2e import ThrowawayUser, run_playbook
from helpers.stack import Stack, sample_manifest

TIMEOUT = 8  # bootstrap_agent_timeout: a hung request ends after this many seconds (generous: CI is slow)
SPOOL = "~/.config/bootstrap-saas/spool.jsonl"
EVENTS = ("POST", "/v1/audit/events")


def state_dir(user):
    return user.home / ".config" / "bootstrap-saas"


def read_if_exists(path):
    return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    work = tmp_path_factory.mktemp("faults")
    stack = Stack(work)
    proxy = FaultProxy(work, stack.cp)
    seen = {"spools": [], "run_tokens": set(), "durations": []}
    try:
        with ThrowawayUser(prefix="bs-audit") as user:
            token = stack.mint()
            variables = stack.role_vars(token, user.name, bootstrap_agent_url=proxy.url,
                                        bootstrap_agent_timeout=TIMEOUT)

            def play():
                started = time.monotonic()
                result = run_playbook(work, variables, "-v")
                seen["durations"].append(time.monotonic() - started)
                run_json = state_dir(user) / "run.json"
                if run_json.exists():
                    seen["run_tokens"].add(json.loads(run_json.read_text())["run_token"])
                seen["spools"].append(read_if_exists(state_dir(user) / "spool.jsonl"))
                return result

            proxy.queue("POST", "/v1/tokens/redeem", "late")
            first = play()

            proxy.queue(*EVENTS, "500", "500", "500", "500")
            second = play()

            proxy.queue(*EVENTS, "hold", "hold", "pass", "late", "pass", "hang", "hang", "500", "500")
            results = {}
            runner = threading.Thread(target=lambda: results.update(third=play()))
            runner.start()
            held = proxy.wait_held()
            stack.cp.process.kill()  # a crash, not a clean shutdown
            stack.cp.process.wait()
            stack.cp.stop()
            proxy.release(held)
            held = proxy.wait_held()  # the retry, waiting while the server comes back
            stack.cp.start()
            proxy.point_at(stack.cp)
            proxy.release(held)
            runner.join(timeout=240)
            assert not runner.is_alive(), "the third run did not end"

            proxy.queue(*EVENTS, "500", "500")
            fourth = play()

            yield {"stack": stack, "proxy": proxy, "user": user, "token": token, "seen": seen,
                   "runs": [first, second, results["third"], fourth], "spool_at_end": state_dir(user) / "spool.jsonl"}
    finally:
        proxy.stop()
        stack.cp.stop()


def fingerprint(token):
    return hashlib.sha256(token.encode()).hexdigest()


def test_faults_at_every_step_lose_nothing_and_record_nothing_twice(scenario):
    first, second, third, fourth = scenario["runs"]
    out = [r.stdout + r.stderr + "\nproxy log: %s" % scenario["proxy"].log() for r in scenario["runs"]]
    assert first.returncode != 0 and "timed out" in out[0], out[0][-3000:]
    assert second.returncode != 0 and "1 event(s) are spooled in %s" % SPOOL in out[1], out[1][-3000:]
    assert third.returncode != 0 and "1 event(s) are spooled in %s" % SPOOL in out[2], out[2][-3000:]
    assert fourth.returncode == 0, out[3][-4000:]
    assert not scenario["spool_at_end"].exists()
    spools = scenario["seen"]["spools"]
    assert [len(s.splitlines()) for s in spools] == [0, 1, 1, 0]
    assert json.loads(spools[1])["type"] == "task.completed" and json.loads(spools[2])["type"] == "run.finished"

    proxy_log = scenario["proxy"].log()
    actions = collections.Counter(e["action"] for e in proxy_log)
    assert actions["500"] == 8 and actions["hang"] == 2 and actions["late"] == 2 and actions["hold"] == 2
    assert any(e["status"] == "upstream down" for e in proxy_log)  # a retry met the stopped server
    forwarded = collections.Counter(e["path"] for e in proxy_log if isinstance(e["status"], int)
                                    and e["action"] != "500")

    cp = scenario["stack"].cp
    events = cp.audit()
    fp = fingerprint(scenario["token"])
    mine = [e for e in events if fp in (e["subject"], e["data"].get("fingerprint"))
            or (e["run_id"] and e["run_id"] in {x["run_id"] for x in events if x["type"] == "run.started"})]
    (run_id,) = {e["run_id"] for e in mine if e["type"] == "run.started"}
    paths = [entry["path"] for entry in sample_manifest()["files"]]
    expected = collections.Counter(
        [("token.minted", None, None, "dev")]
        # token_verify: the control plane records one token.validated per validation it answered
        + [("token.validated", None, None, fp)] * forwarded["/v1/tokens/validate"]
        # the redeem of run 1 (answer lost) and the repeats of runs 2 and 3: the same run each time
        + [("run.started", run_id, None, fp)] * forwarded["/v1/tokens/redeem"]
        + [("task.completed", run_id, "token_redeem", fp)]
        + [("file.written", run_id, "home_files", p) for p in paths]
        + [("task.completed", run_id, "home_files", "dev")]
        + [("run.finished", run_id, "audit_event", run_id)])
    stored = collections.Counter((e["type"], e["run_id"], e["task"] or None, e["subject"]) for e in mine)
    print("\nfault injection: 4 runs (%s s); %d requests through the proxy (%s); events stored %d, expected %d, "
          "lost %d, duplicated %d; by type: %s" % (
              "/".join("%.0f" % d for d in scenario["seen"]["durations"]), len(proxy_log),
              ", ".join("%s %d" % kv for kv in sorted(actions.items())), sum(stored.values()),
              sum(expected.values()), sum((expected - stored).values()), sum((stored - expected).values()),
              ", ".join("%s %d" % kv for kv in sorted(collections.Counter(e["type"] for e in mine).items()))))
    assert forwarded["/v1/tokens/validate"] == 4 and forwarded["/v1/tokens/redeem"] == 3
    assert stored == expected, {"lost": expected - stored, "extra": stored - expected}
    assert len({e["id"] for e in events}) == len(events)

    verify = cp.audit_verify()
    assert verify.returncode == 0 and "audit chain OK" in verify.stdout, verify.stdout
    # run.finished got its signed checkpoint, though it arrived from the spool, a run later.
    (finished,) = [e for e in mine if e["type"] == "run.finished"]
    export = [json.loads(line) for line in cp.cli("audit", "export", "--data", cp.data_dir).stdout.splitlines()]
    signed = [r["checkpoint"] for r in export if "checkpoint" in r]
    assert [(c["seq"], c["hash"]) for c in signed] == [(finished["seq"], finished["hash"])]


def test_canary_no_token_key_or_credential_in_any_event_or_spool(scenario):
    stack, seen = scenario["stack"], scenario["seen"]
    cp = stack.cp
    machine_secret = (state_dir(scenario["user"]) / "machine-secret").read_text().strip()
    user_key = json.loads(stack.user_key_file.read_text())["keys"][0]["k"]
    ssh_lines = [line for line in stack.ssh_key.decode().splitlines() if len(line) >= 16 and "-----" not in line]
    forms = secret_forms([scenario["token"], cp.admin_key, machine_secret, user_key, *ssh_lines,
                          *seen["run_tokens"]])
    assert len(seen["run_tokens"]) >= 2 and len(forms) > 10

    export = cp.cli("audit", "export", "--data", cp.data_dir).stdout
    database = b"".join(p.read_bytes() for p in cp.data_dir.glob("controlplane.db*"))
    places = {"audit list": json.dumps(cp.audit()), "audit export": export, "database": database}
    places.update(("spool after run %d" % (i + 1), s) for i, s in enumerate(seen["spools"]))
    for name, blob in places.items():
        assert leaks(blob, forms) == [], name
    # File content stays out of the trail too: paths, modes and digests only.
    for entry in sample_manifest()["files"]:
        if "content" in entry:
            body = max(entry["content"].splitlines(), key=len)
            assert body not in export and all(body not in s for s in seen["spools"]), entry["path"]
    assert '"sha256"' in export and '"credential":"ssh_key"' in export
