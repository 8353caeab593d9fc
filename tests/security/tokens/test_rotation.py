"""Signing-key rotation: by the CLI in the middle of a real role run, by the server on its own by age,
and the retired key's departure from the JWKS once every token it signed has expired."""
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._jwks import JwksCache
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._tokens import (
    TokenRefused,
    verify_token,
)
from helpers.controlplane import ControlPlane
from helpers.e2e import ThrowawayUser, ansible_env, run_playbook
from helpers.stack import Stack, sample_manifest

from . import _kit
from ._kit import ISSUER, PROVISION_AUD, PROVISION_TYP

HERE = Path(__file__).resolve().parent
PROFILE = {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "export EDITOR=vim\n"}]}


def short_lived(path, **config):
    """A control plane whose tokens live seconds, so that a retired key's whole life fits in a test."""
    plane = ControlPlane(path)
    plane.init()
    cfg_path = plane.data_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(config)
    cfg_path.write_text(json.dumps(cfg))
    plane.set_profile("dev", PROFILE)
    return plane


def collection_verify(cp, token):
    client = ControlPlaneClient(cp.url, ca_pem=cp.ca_path.read_text(), timeout=30)
    return verify_token(token, JwksCache(lambda: client.get("/.well-known/jwks.json")), PROVISION_TYP, ISSUER,
                        PROVISION_AUD)


def test_rotation_in_the_middle_of_a_role_run(tmp_path):
    """token_verify checks the token with K1; `keys rotate` runs from another process; the rest of the
    role (redeem, files, run.finished) completes, its run token signed by K2."""
    stack = Stack(tmp_path / "stack")
    try:
        token = stack.mint()
        k1 = _kit.kid_of(token)
        env = ansible_env(tmp_path)
        log = tmp_path / "rotation.log"
        env.update({"ANSIBLE_CALLBACK_PLUGINS": str(HERE / "callback_plugins"),
                    "ANSIBLE_CALLBACKS_ENABLED": "rotate_after_verify",
                    "BS_TEST_ROTATE_CLI": shutil.which("bs-controlplane", path=str(Path(sys.executable).parent)),
                    "BS_TEST_ROTATE_DATA": str(stack.cp.data_dir), "BS_TEST_ROTATE_LOG": str(log)})
        with ThrowawayUser(prefix="bs-rot") as user:
            result = run_playbook(tmp_path, stack.role_vars(token, user.name), env=env)
            assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
            (rotation,) = [json.loads(line) for line in log.read_text().splitlines()]
            assert rotation["rc"] == 0 and rotation["verified_kid"] == k1, rotation
            k2 = rotation["out"].split("current signing key: ")[1].split(";")[0]
            assert k2 != k1 and "retired: %s" % k1 in rotation["out"]

            run = json.loads((user.home / ".config/bootstrap-saas/run.json").read_text())
            assert _kit.kid_of(run["run_token"]) == k2, "the run token is signed by the new key"
            for entry in sample_manifest()["files"]:
                assert (user.home / entry["path"][2:]).exists(), entry["path"]
        events = stack.cp.audit()
        fp = _kit.fingerprint(token)
        minted = [e for e in events if e["type"] == "token.minted" and e["data"]["fingerprint"] == fp]
        assert [e["data"]["kid"] for e in minted] == [k1]
        started = [e for e in events if e["type"] == "run.started" and e["data"]["fingerprint"] == fp]
        assert len(started) == 1
        assert [e for e in events if e["type"] == "run.finished" and e["run_id"] == started[0]["run_id"]]
        assert sorted(_kit.jwks_kids(stack.cp)) == sorted([k1, k2])  # K1 stays: its tokens are still alive
    finally:
        stack.cp.stop()


def test_retired_key_leaves_the_jwks_once_its_tokens_expired(tmp_path):
    # max_ttl 4 + run_token_extra 2 + leeway 1: a retired key stays published 7 s.
    cp = short_lived(tmp_path / "cp", max_ttl=4, default_ttl=4, run_token_extra=2, leeway=1, rotate_interval=2)
    with cp:
        cp.start("--rotate-interval", "0")  # the flag overrides config.json: no rotation by age here
        token = _kit.mint(cp, ttl=4)
        k1 = _kit.kid_of(token)
        redeemed = _kit.redeem(cp, token, _kit.secret_hash())
        assert redeemed.status == 200, redeemed
        assert _kit.kid_of(redeemed.body["run_token"]) == k1
        out = cp.cli("keys", "rotate", "--data", str(cp.data_dir)).stdout
        retired_at = time.time()
        k2 = out.split("current signing key: ")[1].split(";")[0]
        assert sorted(_kit.jwks_kids(cp)) == sorted([k1, k2])
        # Still within their lives, K1's tokens keep working after the rotation.
        assert _kit.validate(cp, token).body["status"] == "redeemed"
        assert collection_verify(cp, token)["sub"] == "alice"
        event = {"id": "ab" * 16, "type": "task.completed", "run_id": redeemed.body["run_id"], "data": {}}
        assert _kit.api(cp, "POST", "/v1/audit/events", {"events": [event]},
                        bearer=redeemed.body["run_token"]).status == 200

        time.sleep(max(0.0, retired_at + 7 + 1.5 - time.time()))
        assert _kit.jwks_kids(cp) == [k2]
        refused = _kit.validate(cp, token)
        assert (refused.status, refused.code) == (401, "token_invalid") and "unknown signing key" in refused.message
        with pytest.raises(TokenRefused) as local:
            collection_verify(cp, token)
        assert local.value.reason == "unknown_key"
        assert _kit.api(cp, "POST", "/v1/audit/events", {"events": [dict(event, id="cd" * 16)]},
                        bearer=redeemed.body["run_token"]).code == "token_invalid"
        # A K2 token is unaffected, and nothing rotated by age (the flag said 0).
        assert _kit.validate(cp, _kit.mint(cp)).status == 200
        assert len(_kit.key_metadata(cp)) == 2
        # The next rotation deletes K1's files: nothing can sign with it again.
        out = cp.cli("keys", "rotate", "--data", str(cp.data_dir)).stdout
        assert "dropped (every token they signed has expired): %s" % k1 in out
        assert not (cp.data_dir / "keys" / ("%s.pem" % k1)).exists()
        assert not (cp.data_dir / "keys" / ("%s.json" % k1)).exists()


def test_server_rotates_by_age_on_its_own(tmp_path):
    cp = short_lived(tmp_path / "cp", max_ttl=2, default_ttl=2, run_token_extra=1, leeway=1, rotate_interval=2)
    with cp:
        cp.start()  # interval from config.json
        first = _kit.mint(cp)
        k1 = _kit.kid_of(first)
        deadline = time.monotonic() + 15
        while _kit.kid_of(_kit.mint(cp)) == k1 and time.monotonic() < deadline:
            time.sleep(0.25)
        newer = _kit.mint(cp)
        assert _kit.kid_of(newer) != k1, "the server did not rotate within 15 s"
        assert k1 in _kit.jwks_kids(cp) and _kit.validate(cp, first).status == 200
        assert "rotated the signing key by age" in cp.log_text()
        # Rotations go on, and retired keys leave again (4 s after retirement): the JWKS stays small.
        deadline = time.monotonic() + 15
        while k1 in _kit.jwks_kids(cp) and time.monotonic() < deadline:
            time.sleep(0.25)
        kids = _kit.jwks_kids(cp)
        assert k1 not in kids and 1 <= len(kids) <= 4, kids
        assert len(list((cp.data_dir / "keys").glob("*.pem"))) <= 5
