"""`bs-controlplane credential rotate-key`: client-side re-encryption to a new key, read back by kid."""
import json
import os
import secrets
import sqlite3
import stat

import pytest

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient
from bootstrap_controlplane import envelope
from credential_support import (
    LOOKUP,
    failure_of,
    leaks_in_bytes,
    local_play,
    lookup_expr,
    run_play,
    secret_forms,
    task_sections,
)
from helpers.controlplane import ControlPlane

SSH = "ssh CANARY-%s\n" % secrets.token_hex(12)
API = "api CANARY-%s\n" % secrets.token_hex(12)
BOB = "bob CANARY-%s\n" % secrets.token_hex(12)


def latest(cp, user):
    """{name: (version, kid column, header)} of a user's newest credential versions, from the SQLite file."""
    with sqlite3.connect("file:%s?mode=ro" % cp.db_path, uri=True) as db:
        rows = db.execute("SELECT name, version, kid, envelope FROM credentials AS c WHERE user=? AND version = "
                          "(SELECT MAX(version) FROM credentials WHERE user=c.user AND name=c.name)", (user,))
        return {name: (version, kid, envelope.header(compact), compact) for name, version, kid, compact in rows}


def kids(path):
    return [k["kid"] for k in json.loads(path.read_text())["keys"]]


def rotate(cp, *args, check=True):
    return cp.cli("credential", "rotate-key", "--data", str(cp.data_dir), *args, check=check)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("rotation")
    cp = ControlPlane(work / "cp")
    cp.init()
    alice_key, bob_key = cp.new_user_key(work / "alice.key"), cp.new_user_key(work / "bob.key")
    cp.put_credential("alice", "ssh_key", alice_key, SSH.encode())
    cp.put_credential("alice", "api_token", alice_key, API.encode())
    cp.put_credential("bob", "ssh_key", bob_key, BOB.encode())
    cp.set_profile("dev", {"files": [{"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"},
                                     {"path": "~/.config/tool/token", "mode": "0600", "credential": "api_token"}]})
    return {"cp": cp, "work": work, "alice_key": alice_key, "bob_key": bob_key}


def test_rotate_key_re_encrypts_on_the_client_and_the_lookup_reads_old_and_new_by_kid(world, tmp_path):
    cp, key_file = world["cp"], world["alice_key"]
    old_kid = kids(key_file)[0]
    before, bob_before = latest(cp, "alice"), latest(cp, "bob")
    old_envelope = before["ssh_key"][3]

    done = rotate(cp, "--user", "alice", "--key-file", str(key_file))
    new_kid = kids(key_file)[0]
    # the new key is current, the old one stays in the file for envelopes made before
    assert kids(key_file) == [new_kid, old_kid] and new_kid != old_kid
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    after = latest(cp, "alice")
    for name in ("ssh_key", "api_token"):
        version, kid_column, header, dummy = after[name]
        assert version == before[name][0] + 1 and kid_column == new_kid
        assert (header["kid"], header["bs_name"], header["bs_user"], header["bs_ver"]) == (new_kid, name, "alice",
                                                                                           version)
    assert latest(cp, "bob") == bob_before
    assert "now under key %s: api_token v2, ssh_key v2" % new_kid in done.stdout
    # only ciphertext reached the store; nothing secret in the audit trail or in what the CLI printed
    stored = b"".join(p.read_bytes() for p in cp.data_dir.glob("controlplane.db*"))
    key_material = json.loads(key_file.read_text())["keys"]
    forms = {}
    for label, secret in [("ssh", SSH), ("api", API)] + [("key %d" % i, k["k"]) for i, k in enumerate(key_material)]:
        forms.update(secret_forms(label, secret.strip()))
    for where, data in (("database", stored), ("audit", json.dumps(cp.audit()).encode()),
                        ("cli output", (done.stdout + done.stderr).encode())):
        assert leaks_in_bytes(data, forms) == [], where

    # the lookup, fetching from the control plane with a run token, picks each key by kid from one ring
    cp.start()
    try:
        client = ControlPlaneClient(cp.url, ca_pem=cp.ca_path.read_text())
        redeemed = client.post("/v1/tokens/redeem", {
            "token": cp.mint("dev", "alice"), "machine": {"id": "m-" + secrets.token_hex(4), "hostname": "rot"},
            "machine_secret_hash": secrets.token_hex(32)})
        assert redeemed["credentials"]["ssh_key"] == after["ssh_key"][3]
        new_only = tmp_path / "new-only.key"
        new_only.write_text(json.dumps({"keys": key_material[:1]}))
        fetched, offline = tmp_path / "fetched.json", tmp_path / "offline.txt"
        tasks = [
            {"name": "fetched, ring of old and new", "ansible.builtin.copy": {"dest": str(fetched), "content": (
                "{{ query('%s', 'ssh_key', 'api_token', url=url, ca_path=ca, run_token=run_token, user='alice', "
                "user_key_file=ring) | to_json }}" % LOOKUP)}},
            {"name": "old envelope, ring of old and new", "ansible.builtin.copy": {"dest": str(offline), "content": (
                lookup_expr("ssh_key", envelope="old_envelope", user="'alice'", user_key_file="ring"))}},
            {"name": "new key alone, old envelope", "ignore_errors": True, "ansible.builtin.debug": {
                "msg": lookup_expr("ssh_key", envelope="old_envelope", user_key_file="new_only")}},
        ]
        proc = run_play(tmp_path, local_play(tasks), {
            "url": cp.url, "ca": str(cp.ca_path), "run_token": redeemed["run_token"], "ring": str(key_file),
            "new_only": str(new_only), "old_envelope": old_envelope}, "-vvvv")
    finally:
        cp.stop()
    output = proc.stdout + proc.stderr
    assert json.loads(fetched.read_text()) == [SSH, API], output[-3000:]
    assert offline.read_text() == SSH
    assert "unknown key id" in failure_of(task_sections(output), "new key alone, old envelope")
    assert "%r, which is not in the key ring (have: %s)" % (old_kid, new_kid) in output
    assert leaks_in_bytes(output.encode(), forms) == []


def test_rotate_key_to_a_new_key_file(world):
    cp, key_file = world["cp"], world["alice_key"]
    before = latest(cp, "alice")
    new_file = world["work"] / "alice-2027.key"
    rotate(cp, "--user", "alice", "--key-file", str(key_file), "--new-key-file", str(new_file))
    new_kid = kids(new_file)[0]
    assert len(kids(new_file)) == 1 and new_kid not in kids(key_file)
    assert stat.S_IMODE(os.stat(new_file).st_mode) == 0o600
    after = latest(cp, "alice")
    assert {n: (v, h["kid"]) for n, (v, dummy, h, dummy) in after.items()} == {
        n: (before[n][0] + 1, new_kid) for n in before}
    ring = envelope.parse_user_keys(new_file.read_text())
    assert envelope.decrypt(ring, after["api_token"][3], "api_token", "alice") == API.encode()
    # a second run has nothing left to re-encrypt
    again = rotate(cp, "--user", "alice", "--key-file", str(new_file), "--new-key-file", str(new_file))
    assert "now under key %s: none" % new_kid in again.stdout and latest(cp, "alice") == after


def test_rotate_key_refuses_what_it_cannot_open_and_changes_nothing(world):
    cp, bob_key = world["cp"], world["bob_key"]
    stranger = cp.new_user_key(world["work"] / "stranger.key")
    cp.put_credential("bob", "api_token", stranger, b"not bob's key")
    key_text, before = bob_key.read_text(), latest(cp, "bob")
    refused = rotate(cp, "--user", "bob", "--key-file", str(bob_key), check=False)
    assert refused.returncode == 2
    assert "credential api_token of bob: encrypted with user key %r, which is not in the key file; nothing was " \
           "rotated" % kids(stranger)[0] in refused.stderr
    assert bob_key.read_text() == key_text and latest(cp, "bob") == before
    never = world["work"] / "never-written.key"
    refused = rotate(cp, "--user", "bob", "--key-file", str(bob_key), "--new-key-file", str(never), check=False)
    assert refused.returncode == 2 and not never.exists() and latest(cp, "bob") == before

    # a ciphertext moved to another row is refused, not re-encrypted under a header that would bless it
    with sqlite3.connect(str(cp.db_path)) as db:
        db.execute("INSERT INTO credentials (user, name, version, kid, envelope, created) VALUES (?, ?, ?, ?, ?, ?)",
                   ("bob", "api_token", before["api_token"][0] + 1, "x", before["ssh_key"][3], "2026-01-01T00:00:00Z"))
    refused = rotate(cp, "--user", "bob", "--key-file", str(bob_key), check=False)
    assert refused.returncode == 2
    assert "credential api_token of bob: the stored envelope's header names credential 'ssh_key' of user 'bob'" \
        in refused.stderr
    assert bob_key.read_text() == key_text
    assert BOB.strip() not in refused.stdout + refused.stderr
