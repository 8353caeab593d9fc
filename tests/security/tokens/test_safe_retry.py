"""Safe retry: the machine that redeemed a token may repeat the redeem (same secret) and get the same run
back, until the token expires or the run finishes; no other machine can ever use the token.
Check mode validates and consumes nothing."""
import hashlib
import http.server
import json
import os
import ssl
import stat
import threading
import time

import pytest
import yaml

from helpers.controlplane import ControlPlane
from helpers.e2e import ThrowawayUser, run_playbook
from helpers.stack import Stack

from . import _kit

STATE = ".config/bootstrap-saas"


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("retry") / "cp")
    plane.init()
    config_path = plane.data_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["leeway"] = 1  # so that a token's expiry is seconds away, not half a minute
    config_path.write_text(json.dumps(config))
    plane.set_profile("dev", {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "x\n"}]})
    with plane:
        plane.start("--rate-limit", "0")
        yield plane


def finish(cp, run_token, run_id):
    event = {"id": os.urandom(16).hex(), "type": "run.finished", "run_id": run_id, "task": "audit_event",
             "subject": "", "data": {}}
    answer = _kit.api(cp, "POST", "/v1/audit/events", {"events": [event]}, bearer=run_token)
    assert answer.status == 200, answer


def test_repeat_with_the_same_secret_until_run_finished(cp):
    token, mine, other = _kit.mint(cp), _kit.secret_hash(), _kit.secret_hash()
    first = _kit.redeem(cp, token, mine, "me")
    assert first.status == 200 and first.body["repeat"] is False
    again = _kit.redeem(cp, token, mine, "me")
    assert again.status == 200, again
    assert again.body["repeat"] is True and again.body["run_id"] == first.body["run_id"]
    assert again.body["run_token"] != first.body["run_token"]
    assert again.body["profile"] == first.body["profile"]

    stolen = _kit.redeem(cp, token, other, "thief")
    assert (stolen.status, stolen.code) == (409, "already_redeemed")
    # The secret is what counts, not what the machine says it is.
    spoofed = _kit.redeem(cp, token, other, "me")
    assert (spoofed.status, spoofed.code) == (409, "already_redeemed")

    finish(cp, again.body["run_token"], first.body["run_id"])
    late = _kit.redeem(cp, token, mine, "me")
    assert (late.status, late.code) == (409, "run_finished"), late
    assert (_kit.redeem(cp, token, other, "thief").code) == "already_redeemed"
    for run_token in (first.body["run_token"], again.body["run_token"]):  # revoked at run.finished
        gone = _kit.api(cp, "GET", "/v1/credentials/anything", bearer=run_token)
        assert (gone.status, gone.code) == (410, "gone")
    fp = _kit.fingerprint(token)
    refusals = [e["data"]["reason"] for e in cp.audit()
                if e["type"] == "token.redeem_refused" and e["data"]["fingerprint"] == fp]
    assert refusals == ["already_redeemed", "already_redeemed", "run_finished", "already_redeemed"]


def test_repeat_is_refused_as_expired_after_exp(cp):
    token, mine = _kit.mint(cp, ttl=2), _kit.secret_hash()
    first = _kit.redeem(cp, token, mine, "me")
    assert first.status == 200
    exp = _kit.validate(cp, token).body["expires_at"]
    time.sleep(max(0.0, exp + 1 + 1.2 - time.time()))  # past exp and the 1 s leeway
    late = _kit.redeem(cp, token, mine, "me")
    assert (late.status, late.code) == (401, "token_expired"), late


class LosingProxy:
    """Stands in front of the control plane with its own TLS certificate, passes each request on, and
    hangs up instead of answering: the redeem happens, its answer is lost on the way back."""

    def __init__(self, cp):
        proxy = self
        self.forwarded = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = _kit.api(cp, "POST", self.path, body)
                proxy.forwarded.append((self.path, answer.status))
                self.close_connection = True  # and no answer at all

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cp.data_dir / "server.pem"), str(cp.data_dir / "server-key.pem"))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = "https://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("retry-stack"))
    try:
        yield s
    finally:
        s.cp.stop()


def redeem_only_playbook(path):
    path.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "redeem", "bootstrap_saas.provisioning.token_redeem": {
            "url": "{{ bootstrap_agent_url }}", "token": "{{ bootstrap_agent_token }}",
            "ca_pem": "{{ lookup('ansible.builtin.file', bootstrap_agent_ca_path) }}",
            "user": "{{ bootstrap_agent_user }}"}}]}]))
    return path


def test_lost_answer_is_recovered_by_the_same_host_and_no_one_else(stack, tmp_path):
    token = stack.mint()
    fp = _kit.fingerprint(token)
    proxy = LosingProxy(stack.cp)
    with ThrowawayUser(prefix="bs-retry") as user:
        lost = run_playbook(tmp_path, stack.role_vars(token, user.name, bootstrap_agent_url=proxy.url),
                            playbook=redeem_only_playbook(tmp_path / "redeem.yml"))
        proxy.close()
        assert lost.returncode != 0, lost.stdout[-3000:]
        assert proxy.forwarded == [("/v1/tokens/redeem", 200)]
        assert "unreachable" in lost.stdout and token not in lost.stdout + lost.stderr
        # The server did redeem: the token is consumed, bound to the host's secret.
        started = [e for e in stack.cp.audit() if e["type"] == "run.started" and e["data"]["fingerprint"] == fp]
        assert len(started) == 1
        # The secret was written durably before the redeem: 0600 in the 0700 agent folder, the user's own.
        secret_path = user.home / STATE / "machine-secret"
        st, dir_st = secret_path.stat(), secret_path.parent.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and stat.S_IMODE(dir_st.st_mode) == 0o700
        assert st.st_uid == user.pw.pw_uid
        secret = secret_path.read_text().strip()
        assert len(secret) == 64 and not (user.home / STATE / "run.json").exists()

        # Another machine with the same token is refused, now and later.
        thief = _kit.redeem(stack.cp, token, _kit.secret_hash(), "thief")
        assert (thief.status, thief.code) == (409, "already_redeemed")

        # The same host reruns the whole role: the repeat gets the same run and the work is done.
        rerun = run_playbook(tmp_path, stack.role_vars(token, user.name))
        assert rerun.returncode == 0, rerun.stdout[-5000:] + rerun.stderr[-2000:]
        run = json.loads((user.home / STATE / "run.json").read_text())
        assert run["run_id"] == started[0]["run_id"] and run["finished"] is True
        assert (user.home / ".zshrc").exists()
        events = stack.cp.audit()
        repeats = [e["data"]["repeat"] for e in events if e["type"] == "run.started" and e["data"]["fingerprint"] == fp]
        assert repeats == [False, True]

        # After run.finished the same secret is refused as finished (a rerun of the role then changes
        # nothing: tests/e2e covers that second converge).
        finished = _kit.redeem(stack.cp, token, hashlib.sha256(secret.encode()).hexdigest(), "me")
        assert (finished.status, finished.code) == (409, "run_finished")


def test_check_mode_validates_and_consumes_nothing(stack, tmp_path):
    """token_verify and token_redeem, the two tasks that meet the token, in check mode: validated, not consumed."""
    token = stack.mint()
    fp = _kit.fingerprint(token)
    book = tmp_path / "check.yml"
    book.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "verify", "bootstrap_saas.provisioning.token_verify": {
            "url": "{{ bootstrap_agent_url }}", "token": "{{ bootstrap_agent_token }}",
            "ca_path": "{{ bootstrap_agent_ca_path }}"}, "register": "verified"},
        {"name": "redeem", "bootstrap_saas.provisioning.token_redeem": {
            "url": "{{ bootstrap_agent_url }}", "token": "{{ bootstrap_agent_token }}",
            "ca_pem": "{{ lookup('ansible.builtin.file', bootstrap_agent_ca_path) }}",
            "user": "{{ bootstrap_agent_user }}"}, "register": "redeemed"},
        {"ansible.builtin.assert": {"that": ["verified.status == 'unused'", "redeemed.run_id is not defined",
                                             "'would redeem' in redeemed.msg"]}},
    ]}]))
    with ThrowawayUser(prefix="bs-check") as user:
        before = sorted(p.name for p in user.home.iterdir())
        checked = run_playbook(tmp_path, stack.role_vars(token, user.name), "--check", playbook=book)
        assert checked.returncode == 0, checked.stdout[-5000:] + checked.stderr[-2000:]
        assert sorted(p.name for p in user.home.iterdir()) == before
        assert not (user.home / STATE).exists()
    assert _kit.validate(stack.cp, token).body["status"] == "unused"
    events = stack.cp.audit()
    assert [e["data"]["status"] for e in events if e["type"] == "token.validated" and e["data"]["fingerprint"] == fp] \
        == ["unused", "unused"]
    assert not [e for e in events if e["type"] in ("run.started", "token.redeem_refused")
                and e["data"].get("fingerprint") == fp]
