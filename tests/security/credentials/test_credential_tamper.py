"""Tampered, moved and wrongly keyed envelopes are refused, each with the reason for it.

The sweep changes a stored envelope (as `credential put` wrote it into the control plane's SQLite
file) in every position to every other byte value, the full set, and decrypts each variant with the
collection's decrypter (a playbook run per variant would take hours). The cases that a real attack
on the control plane's database would produce go through the real lookup in a real playbook run.
"""
import base64
import binascii
import json
import re
import secrets
import sqlite3

import pytest

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient,
    ControlPlaneError,
)
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._envelope import (
    EnvelopeError,
    decrypt_envelope,
    load_key_ring,
)
from credential_support import failure_of, local_play, lookup_expr, run_play, task_sections
from helpers.controlplane import ControlPlane

PLAINTEXT = "api-token CANARY-%s\n{{ lookup('pipe', 'id') }}\n" % secrets.token_hex(12)
KID = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def canonical_b64u(segment):
    """Bytes of an unpadded base64url segment; ValueError for any other spelling."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", segment) or len(segment) % 4 == 1:
        raise ValueError(segment)
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if b64u(raw) != segment:
        raise ValueError(segment)
    return raw


def expected_reason(text, ring, name, user):
    """The refusal that the documented checks, in their documented order, give for an envelope."""
    segments = text.strip().split(".")
    if len(segments) != 5:
        return "malformed"
    try:
        header = json.loads(canonical_b64u(segments[0]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return "malformed"
    if not isinstance(header, dict) or header.get("alg") != "dir" or header.get("enc") != "A256GCM":
        return "malformed"
    if "zip" in header or "crit" in header or segments[1]:
        return "malformed"
    kid, version = header.get("kid"), header.get("bs_ver")
    if not isinstance(kid, str) or not KID.match(kid) or not isinstance(version, int) or isinstance(version, bool):
        return "malformed"
    if header.get("bs_name") != name:
        return "name_mismatch"
    if header.get("bs_user") != user:
        return "user_mismatch"
    if kid not in ring:
        return "unknown_kid"
    try:
        iv, dummy, tag = (canonical_b64u(s) for s in segments[2:])
    except ValueError:
        return "malformed"
    if len(iv) != 12 or len(tag) != 16:
        return "malformed"
    return "decrypt_failed"


def stored_envelope(cp, user, name):
    with sqlite3.connect("file:%s?mode=ro" % cp.db_path, uri=True) as db:
        return db.execute("SELECT envelope FROM credentials WHERE user=? AND name=? ORDER BY version DESC LIMIT 1",
                          (user, name)).fetchone()[0]


def store_raw(cp, user, name, envelope, kid="tampered"):
    """What someone with write access to the control plane's database could do."""
    with sqlite3.connect(str(cp.db_path)) as db:
        version = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM credentials WHERE user=? AND name=?",
                             (user, name)).fetchone()[0]
        db.execute("INSERT INTO credentials (user, name, version, kid, envelope, created) VALUES (?, ?, ?, ?, ?, ?)",
                   (user, name, version, kid, envelope, "2026-01-01T00:00:00Z"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A control plane with credentials of alice and bob, each encrypted with their own key."""
    work = tmp_path_factory.mktemp("tamper")
    cp = ControlPlane(work / "cp")
    cp.init()
    alice_key, bob_key = cp.new_user_key(work / "alice.key"), cp.new_user_key(work / "bob.key")
    for name in ("api_token", "gpg_key"):
        cp.put_credential("alice", name, alice_key, PLAINTEXT.encode())
    for name in ("ssh_key", "deploy_key", "bob_only"):
        cp.put_credential("bob", name, bob_key, ("bob's " + PLAINTEXT).encode())
    cp.set_profile("dev", {"files": [{"path": "~/.config/tool/token", "mode": "0600", "credential": "api_token"}]})
    cp.start()
    try:
        client = ControlPlaneClient(cp.url, ca_pem=cp.ca_path.read_text())
        redeemed = client.post("/v1/tokens/redeem", {
            "token": cp.mint("dev", "alice"),
            "machine": {"id": "m-" + secrets.token_hex(4), "hostname": "tamper-test"},
            "machine_secret_hash": secrets.token_hex(32)})
        yield {"cp": cp, "work": work, "alice_key": alice_key, "bob_key": bob_key, "client": client,
               "run_token": redeemed["run_token"]}
    finally:
        cp.stop()


def test_every_single_byte_change_of_a_stored_envelope_is_refused_with_its_reason(world):
    compact = stored_envelope(world["cp"], "alice", "api_token")
    ring = load_key_ring(world["alice_key"].read_text())
    secret_k = json.loads(world["alice_key"].read_text())["keys"][0]["k"]
    assert decrypt_envelope(compact, ring, "api_token", "alice") == PLAINTEXT
    seen = {}
    for position, original in enumerate(compact):
        for value in range(256):
            replacement = chr(value)  # every byte value, as the lookup sees text (Latin-1 for the upper half)
            if replacement == original:
                continue
            changed = compact[:position] + replacement + compact[position + 1:]
            try:
                decrypt_envelope(changed, ring, "api_token", "alice")
            except EnvelopeError as e:
                expected = expected_reason(changed, ring, "api_token", "alice")
                if e.reason != expected:
                    pytest.fail("byte %d set to 0x%02x: refused as %s, expected %s"
                                % (position, value, e.reason, expected))
                if PLAINTEXT in e.message or secret_k in e.message:
                    pytest.fail("byte %d set to 0x%02x: the refusal echoes a secret" % (position, value))
                seen[e.reason] = seen.get(e.reason, 0) + 1
            else:
                pytest.fail("byte %d set to 0x%02x: the changed envelope decrypted" % (position, value))
    assert sum(seen.values()) == len(compact) * 255
    # the sweep reached every check: structure, name, user, key id and the AES-GCM tag
    assert set(seen) == {"malformed", "name_mismatch", "user_mismatch", "unknown_kid", "decrypt_failed"}, seen


def test_moved_rewritten_and_wrongly_keyed_envelopes_fail_through_the_real_lookup(world, tmp_path):
    cp = world["cp"]
    alice_ring = json.loads(world["alice_key"].read_text())
    bob_ssh = stored_envelope(cp, "bob", "ssh_key")
    # a name swap: alice's api_token envelope stored as her db_password
    store_raw(cp, "alice", "db_password", stored_envelope(cp, "alice", "api_token"))
    # a user swap: bob's ssh_key envelope stored as alice's ssh_key
    store_raw(cp, "alice", "ssh_key", bob_ssh)
    # a user swap that also rewrites the header to alice's name and key id
    bob_deploy = stored_envelope(cp, "bob", "deploy_key")
    header = json.loads(base64.urlsafe_b64decode(bob_deploy.split(".")[0] + "=="))
    header.update(bs_user="alice", kid=alice_ring["keys"][0]["kid"])
    rewritten = b64u(json.dumps(header, separators=(",", ":")).encode()) + bob_deploy[bob_deploy.index("."):]
    store_raw(cp, "alice", "deploy_key", rewritten)
    # one byte of the stored ciphertext changed
    gpg = stored_envelope(cp, "alice", "gpg_key")
    cut = gpg.split(".")
    cut[3] = ("B" if cut[3][5] == "A" else "A").join([cut[3][:5], cut[3][6:]])
    store_raw(cp, "alice", "gpg_key", ".".join(cut))

    wrong_same_kid = {"keys": [dict(alice_ring["keys"][0], k=b64u(secrets.token_bytes(32)))]}
    fetch = dict(url="url", ca_path="ca", run_token="run_token", user="'alice'")
    cases = [
        ("genuine", "api_token", dict(fetch, user_key_file="alice_key"), None),
        ("swapped name", "db_password", dict(fetch, user_key_file="alice_key"),
         'name mismatch): the envelope is for credential "api_token", not "db_password"'),
        ("swapped user", "ssh_key", dict(fetch, user_key_file="alice_key"),
         'user mismatch): the envelope belongs to user "bob", not "alice"'),
        ("swapped user, header rewritten", "deploy_key", dict(fetch, user_key_file="alice_key"),
         "wrong key or tampered data"),
        ("stored byte changed", "gpg_key", dict(fetch, user_key_file="alice_key"), "wrong key or tampered data"),
        ("wrong key, same kid", "api_token", dict(fetch, user_key="wrong_same_kid"), "wrong key or tampered data"),
        ("wrong key, other kid", "api_token", dict(fetch, user_key_file="bob_key"), "unknown key id"),
        ("another user's credential", "bob_only", dict(fetch, user_key_file="alice_key"),
         "control plane forbidden (forbidden: credential 'bob_only' belongs to another user)"),
    ]
    out = tmp_path / "genuine.txt"
    tasks = []
    for label, term, options, dummy in cases:
        task = {"name": label, "ansible.builtin.copy": {"content": lookup_expr(term, **options), "dest": str(out)}}
        if label != "genuine":
            task["ignore_errors"] = True
        tasks.append(task)
    proc = run_play(tmp_path, local_play(tasks), {
        "url": cp.url, "ca": str(cp.ca_path), "run_token": world["run_token"],
        "alice_key": str(world["alice_key"]), "bob_key": str(world["bob_key"]),
        "wrong_same_kid": json.dumps(wrong_same_kid)}, "-vvvv")
    output = proc.stdout + proc.stderr
    assert out.read_text() == PLAINTEXT, output[-4000:]
    sections = task_sections(output)
    for label, _term, _options, expected in cases[1:]:
        assert expected in failure_of(sections, label), (label, sections[label][-2000:])
    for secret in (PLAINTEXT.split("\n")[0], wrong_same_kid["keys"][0]["k"], alice_ring["keys"][0]["k"],
                   world["run_token"]):
        assert secret not in output


def test_another_users_credential_is_403_and_says_so(world):
    with pytest.raises(ControlPlaneError) as refused:
        world["client"].get("/v1/credentials/bob_only", bearer=world["run_token"])
    assert (refused.value.status, refused.value.code) == (403, "forbidden")
    assert "belongs to another user" in refused.value.message
    assert "CANARY" not in str(refused.value)
    with pytest.raises(ControlPlaneError) as missing:
        world["client"].get("/v1/credentials/nobody_has_this", bearer=world["run_token"])
    assert missing.value.status == 404
