"""A canary credential and a canary user key leak nowhere: not in -vvvv output, the control plane, or any file.

Four real runs of the role against throwaway users: one that succeeds, and three whose decrypting
task fails (a wrong key, an envelope tampered in the control plane's database, and a destination
that home_files refuses after the lookup decrypted the credential).
"""
import contextlib
import json
import os
import re
import secrets
import sqlite3
import tempfile

import pytest

from credential_support import leaks_in_bytes, leaks_in_files, scan_started, secret_forms, task_sections
from helpers.e2e import ThrowawayUser, run_playbook
from helpers.stack import CP_USER, Stack

CANARY = "CANARY-PLAINTEXT-" + secrets.token_hex(16)
PLAINTEXT = ("-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n%s\n-----END OPENSSH PRIVATE KEY-----\n"
             % (CANARY, secrets.token_hex(24)))
DECRYPTING_TASK = "bootstrap_saas.provisioning.bootstrap_agent : Write the profile into the allowlisted home paths"


def tamper(cp):
    """Store a copy of the newest ssh_key envelope with one ciphertext character changed."""
    with sqlite3.connect(str(cp.db_path)) as db:
        version, kid, compact = db.execute(
            "SELECT version, kid, envelope FROM credentials WHERE user=? AND name='ssh_key' ORDER BY version DESC "
            "LIMIT 1", (CP_USER,)).fetchone()
        parts = compact.split(".")
        parts[3] = parts[3][:7] + ("B" if parts[3][7] == "A" else "A") + parts[3][8:]
        db.execute("INSERT INTO credentials (user, name, version, kid, envelope, created) VALUES (?, ?, ?, ?, ?, ?)",
                   (CP_USER, "ssh_key", version + 1, kid, ".".join(parts), "2026-01-01T00:00:00Z"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    since = scan_started()
    work = tmp_path_factory.mktemp("canaries")
    stack = Stack(work)
    stack.cp.put_credential(CP_USER, "ssh_key", stack.user_key_file, PLAINTEXT.encode())
    key = json.loads(stack.user_key_file.read_text())["keys"][0]
    wrong_key = dict(key, k=secrets.token_urlsafe(32))
    elsewhere = tempfile.mkdtemp(prefix="bs-canary-elsewhere-")
    with contextlib.ExitStack() as users:
        ok, wrong, tampered, blocked = (users.enter_context(ThrowawayUser("bs-canary")) for dummy in range(4))
        results = {"ok": run_playbook(work, stack.role_vars(stack.mint(), ok.name), "-vvvv")}
        results["wrong key"] = run_playbook(work, stack.role_vars(
            stack.mint(), wrong.name, bootstrap_agent_user_key=json.dumps({"keys": [wrong_key]})), "-vvvv")
        # ~/.ssh planted as a link out of the home: home_files refuses after the credential was decrypted
        os.chown(elsewhere, blocked.pw.pw_uid, blocked.pw.pw_gid)
        os.symlink(elsewhere, str(blocked.home / ".ssh"))
        results["refused destination"] = run_playbook(work, stack.role_vars(stack.mint(), blocked.name), "-vvvv")
        tamper(stack.cp)
        results["tampered envelope"] = run_playbook(work, stack.role_vars(stack.mint(), tampered.name), "-vvvv")
        try:
            yield {"stack": stack, "results": results, "since": since, "work": work, "elsewhere": elsewhere,
                   "destination": ok.home / ".ssh" / "id_ed25519", "homes": [u.home for u in (ok, wrong, tampered, blocked)],
                   "forms": dict(secret_forms("plaintext", CANARY), **secret_forms("user key", key["k"]),
                                 **secret_forms("wrong key", wrong_key["k"]))}
        finally:
            stack.cp.stop()
            os.rmdir(elsewhere)


def test_the_run_writes_the_credential_to_its_destination(runs):
    result = runs["results"]["ok"]
    assert result.returncode == 0, result.stdout[-5000:]
    assert runs["destination"].read_text() == PLAINTEXT


@pytest.mark.parametrize("case, reason", [
    ("wrong key", r"refused \(wrong key or tampered data\): decryption failed with user key"),
    ("tampered envelope", r"refused \(wrong key or tampered data\): decryption failed with user key"),
    ("refused destination", r'"path": "~/\.ssh/id_ed25519",\s+"rule": "symlink"'),
])
def test_the_decrypting_task_fails_with_its_reason(runs, case, reason):
    result = runs["results"][case]
    output = result.stdout + result.stderr
    assert result.returncode != 0
    section = task_sections(output)[DECRYPTING_TASK]
    assert "FAILED!" in section and re.search(reason, section.replace('\\"', '"')), section[-3000:]


@pytest.mark.parametrize("case", ["ok", "wrong key", "refused destination", "tampered envelope"])
def test_no_canary_in_the_vvvv_output(runs, case):
    result = runs["results"][case]
    assert "<" in result.stdout and len(result.stdout) > 2000  # -vvvv really was verbose
    assert leaks_in_bytes((result.stdout + result.stderr).encode(), runs["forms"]) == []


def test_no_canary_in_the_control_plane_database_logs_or_audit_trail(runs):
    cp = runs["stack"].cp
    files = sorted(cp.db_path.parent.glob(cp.db_path.name + "*"))
    assert {p.name for p in files} >= {"controlplane.db", "controlplane.db-wal", "controlplane.db-shm"}
    for path in files:  # the database with its -wal and -shm, while the server runs
        assert leaks_in_bytes(path.read_bytes(), runs["forms"]) == [], path.name
    audit = json.dumps(cp.audit()) + cp.cli("audit", "list", "--data", str(cp.data_dir)).stdout
    assert "run.started" in audit
    assert leaks_in_bytes(audit.encode(), runs["forms"]) == []
    cp.stop()  # and once the server has checkpointed its log into the database on the way out
    for path in cp.db_path.parent.glob(cp.db_path.name + "*"):
        assert leaks_in_bytes(path.read_bytes(), runs["forms"]) == [], path.name
    assert "serving" in cp.log_text()
    assert leaks_in_bytes(cp.log_text().encode(), runs["forms"]) == []


def test_no_canary_in_any_file_on_the_host_but_the_destination(runs):
    roots = list(runs["homes"]) + ["/tmp", "/var/tmp", os.path.expanduser("~/.ansible")]
    stack = runs["stack"]
    # the scan finds what is there: the destination and the user's own key file hold the canaries
    found = {path for path, dummy in leaks_in_files(roots, runs["forms"], runs["since"])}
    assert {str(runs["destination"]), str(stack.user_key_file)} <= found
    # the ansible local and remote temp dirs are below the work dir, so below /tmp
    assert str(runs["work"]).startswith(tempfile.gettempdir())
    leaks = leaks_in_files(roots, runs["forms"], runs["since"], allowed=[runs["destination"], stack.user_key_file])
    assert leaks == []
    assert os.listdir(runs["elsewhere"]) == []
