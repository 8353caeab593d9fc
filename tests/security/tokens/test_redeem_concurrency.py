"""Exactly-once redemption under concurrency: 50 simultaneous redeems of one token, 20 times in a row.

The server runs threaded (more threads than requests) with the hidden test-only option
``--test-redeem-delay``, which sleeps between the redeem's read of the token row and its write. Every
one of the 50 requests has read the row as "unused" before the first of them writes, so an
implementation that decided from that read (read-then-write) would let several through; only the
single conditional UPDATE keeps it to one. Rate limiting is off for this test (it has its own).
"""
import threading
import time

import pytest

from helpers.controlplane import ControlPlane

from . import _kit

RUNS = 20
PARALLEL = 50
DELAY = 0.3  # seconds between read and write on the server
PROFILE = {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "export EDITOR=vim\n"}]}


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("concurrency") / "cp")
    plane.init()
    plane.set_profile("dev", PROFILE)
    with plane:
        plane.start("--rate-limit", "0", "--threads", str(PARALLEL + 14), "--test-redeem-delay", str(DELAY))
        yield plane


def race(cp, token, run):
    """50 redeems of one token, each with its own machine and secret, released at the same instant."""
    context = _kit.tls_context(cp)
    connections = [_kit.connection(cp, context) for dummy in range(PARALLEL)]
    for conn in connections:
        conn.connect()  # TLS handshakes before the start line, so that the requests really overlap
    barrier = threading.Barrier(PARALLEL)
    answers = [None] * PARALLEL

    def redeem(i):
        body = _kit.redeem_body(token, _kit.secret_hash(), "run%02d-m%02d" % (run, i))
        barrier.wait()
        try:
            answers[i] = _kit.send(connections[i], "POST", "/v1/tokens/redeem", body)
        finally:
            connections[i].close()

    threads = [threading.Thread(target=redeem, args=(i,)) for i in range(PARALLEL)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return answers, time.monotonic() - started


def test_fifty_parallel_redeems_have_exactly_one_winner_twenty_times(cp):
    outcomes = []
    for run in range(RUNS):
        token = _kit.mint(cp)
        answers, elapsed = race(cp, token, run)
        assert all(a is not None for a in answers), "a request got no answer"
        winners = [i for i, a in enumerate(answers) if a.status == 200]
        refused = [a for a in answers if a.status != 200]
        assert len(winners) == 1, "run %d: %d redeems succeeded: %r" % (run, len(winners), [
            a.body.get("run_id") for a in answers if a.status == 200])
        assert len(refused) == PARALLEL - 1
        for answer in refused:
            assert (answer.status, answer.code) == (409, "already_redeemed"), answer
            assert "already redeemed" in answer.message and token not in answer.message
        # The window was real: every request waited DELAY after its read, and they ran side by side
        # (one after another would take PARALLEL * DELAY).
        assert DELAY <= elapsed < PARALLEL * DELAY / 3, elapsed
        outcomes.append((_kit.fingerprint(token), "run%02d-m%02d" % (run, winners[0]),
                         answers[winners[0]].body["run_id"]))

    events = cp.audit()
    for fp, winner, run_id in outcomes:
        started = [e for e in events if e["type"] == "run.started" and e["data"]["fingerprint"] == fp]
        assert [(e["run_id"], e["data"]["machine"]["id"]) for e in started] == [(run_id, winner)]
        refusals = [e for e in events if e["type"] == "token.redeem_refused" and e["data"]["fingerprint"] == fp]
        assert len(refusals) == PARALLEL - 1
        assert {e["data"]["reason"] for e in refusals} == {"already_redeemed"}
        machines = {e["data"]["machine"]["id"] for e in refusals}
        assert len(machines) == PARALLEL - 1 and winner not in machines
