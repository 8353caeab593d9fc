"""Enrollment keys on the real control plane: mint only, one profile and user, own expiry, revocable."""
import time

import pytest

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient,
    ControlPlaneError,
    token_fingerprint,
)
from helpers.stack import CP_USER, sample_manifest


def new_key(stack, *extra, profile="dev", user=CP_USER):
    done = stack.cp.cli("enrollment-key", "new", "--data", stack.cp.data_dir, "--profile", profile, "--user", user,
                        *extra)
    value = done.stdout.strip()
    assert value.count("\n") == 0 and value.split(".")[1] in done.stderr
    return value, value.split(".")[1]


def client(stack):
    return ControlPlaneClient(stack.cp.url, ca_pem=stack.cp.ca_path.read_text(), timeout=10)


def refusal(stack, key, body):
    with pytest.raises(ControlPlaneError) as caught:
        client(stack).post("/v1/tokens", body, bearer=key)
    assert key not in str(caught.value)
    return caught.value


def test_a_key_mints_for_its_scope_and_the_audit_names_its_id(stack):
    key, key_id = new_key(stack)
    answer = client(stack).post("/v1/tokens", {"ttl": 600}, bearer=key)
    assert answer["fingerprint"] == token_fingerprint(answer["token"])
    explicit = client(stack).post("/v1/tokens", {"profile": "dev", "user": CP_USER}, bearer=key)
    validated = client(stack).post("/v1/tokens/validate", {"token": answer["token"]})
    assert (validated["profile"], validated["user"], validated["status"]) == ("dev", CP_USER, "unused")
    minted = {e["data"]["fingerprint"]: e for e in stack.cp.audit() if e["type"] == "token.minted"}
    for fp in (answer["fingerprint"], explicit["fingerprint"]):
        assert minted[fp]["actor"] == "enrollment-key:" + key_id
    assert minted[answer["fingerprint"]]["data"]["ttl"] == 600
    assert stack.cp.audit_verify().returncode == 0


def test_only_a_fingerprint_of_the_key_is_stored(stack):
    key, key_id = new_key(stack)
    secret = key.split(".")[2]
    for path in stack.cp.data_dir.iterdir():
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path.name
    stored = stack.cp.data_dir.glob("controlplane.db*")  # the database and its write-ahead log
    assert token_fingerprint(key).encode() in b"".join(p.read_bytes() for p in stored)


def test_another_profile_or_user_is_refused_and_audited(stack):
    stack.cp.set_profile("ops", sample_manifest())
    key, key_id = new_key(stack)
    for body in ({"profile": "ops"}, {"user": "mallory"}, {"profile": "ops", "user": "mallory"}):
        e = refusal(stack, key, body)
        assert (e.status, e.code) == (403, "enrollment_key_out_of_scope")
        assert "profile 'dev' and user 'alice'" in e.message
    refused = [e for e in stack.cp.audit() if e["type"] == "token.mint_refused" and e["subject"] == key_id]
    assert len(refused) == 3 and refused[0]["actor"] == "enrollment-key:" + key_id


def test_a_revoked_key_is_refused_but_the_admin_key_still_mints(stack):
    key, key_id = new_key(stack)
    client(stack).post("/v1/tokens", {}, bearer=key)
    assert key_id in stack.cp.cli("enrollment-key", "revoke", "--data", stack.cp.data_dir, key_id).stdout
    e = refusal(stack, key, {})
    assert (e.status, e.code) == (401, "enrollment_key_revoked") and key_id in e.message
    assert client(stack).post("/v1/tokens", {"profile": "dev", "user": CP_USER}, bearer=stack.cp.admin_key)["token"]
    types = [e["type"] for e in stack.cp.audit() if e["subject"] == key_id]
    assert types == ["enrollment_key.created", "enrollment_key.revoked", "token.mint_refused"]


def test_an_expired_key_is_refused(stack):
    key, key_id = new_key(stack, "--expires", "1")
    time.sleep(1.2)
    e = refusal(stack, key, {})
    assert (e.status, e.code) == (401, "enrollment_key_expired")


def test_an_unknown_or_altered_key_is_unauthorized(stack):
    key, key_id = new_key(stack)
    for bad in (key[:-1] + ("A" if key[-1] != "A" else "B"), "bsek.ek-0000000000000000." + "x" * 43, "bsek.nonsense"):
        e = refusal(stack, bad, {})
        assert (e.status, e.code) == (401, "unauthorized")


def test_an_enrollment_key_opens_nothing_but_minting(stack):
    key, dummy = new_key(stack)
    with pytest.raises(ControlPlaneError) as caught:
        client(stack).put("/v1/profiles/dev", sample_manifest(), bearer=key)
    assert caught.value.status == 401


def test_cli_refuses_an_unknown_profile_and_an_unknown_key(stack):
    done = stack.cp.cli("enrollment-key", "new", "--data", stack.cp.data_dir, "--profile", "nope", "--user", CP_USER,
                        check=False)
    assert done.returncode == 2 and "unknown profile 'nope'" in done.stderr and not done.stdout
    done = stack.cp.cli("enrollment-key", "revoke", "--data", stack.cp.data_dir, "ek-0123456789abcdef", check=False)
    assert done.returncode == 2 and "no enrollment key ek-0123456789abcdef" in done.stderr
