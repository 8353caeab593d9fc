"""The reference control plane, for real: a `bs-controlplane serve` process over HTTPS on a real SQLite file."""
import base64
import hashlib
import json
import os
import secrets
import sqlite3
import ssl
import stat
import threading
import time
import urllib.error
import urllib.request
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bootstrap_controlplane import envelope
from helpers.controlplane import ControlPlane

PROFILE = {"files": [
    {"path": "~/.zshrc", "mode": "0644", "content": "export EDITOR=vim\n"},
    {"path": "~/.config/tool/config.toml", "mode": "0600", "content_base64": base64.b64encode(b"a = 1\n").decode()},
    {"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"},
]}
SSH_KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-" + secrets.token_hex(8).encode() + b"\n"


def api(cp, method, path, body=None, bearer=None):
    """(status, json body, headers) of one HTTPS request, verified against the control plane's CA."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(cp.url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    ctx = ssl.create_default_context(cafile=str(cp.ca_path))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=15) as resp:
            return resp.status, json.loads(resp.read()), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def code_of(answer):
    return answer[1]["error"]["code"]


def secret_hash():
    return hashlib.sha256(secrets.token_hex(32).encode()).hexdigest()


def redeem(cp, token, machine_secret_hash, machine_id="m1"):
    return api(cp, "POST", "/v1/tokens/redeem", {
        "token": token, "machine": {"id": machine_id, "hostname": f"host-{machine_id}", "user": "dev"},
        "machine_secret_hash": machine_secret_hash})


def signing_key(cp):
    """The control plane's own current private key and kid (to forge tokens the server would accept)."""
    metas = sorted((json.loads(p.read_text()) for p in (cp.data_dir / "keys").glob("*.json")),
                   key=lambda m: m["created"])
    kid = [m for m in metas if m["retired_at"] is None][-1]["kid"]
    key = serialization.load_pem_private_key((cp.data_dir / "keys" / f"{kid}.pem").read_bytes(), None)
    return kid, key


def forge(key, kid, typ="bs-provision+jwt", alg="RS256", **overrides):
    now = int(time.time())
    claims = {"iss": "bootstrap-saas", "aud": "bootstrap-saas:provision", "sub": "alice", "jti": uuid.uuid4().hex,
              "iat": now, "nbf": now, "exp": now + 600, "profile": "dev"}
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": typ})


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("cp") / "data")
    plane.init()
    plane.set_profile("dev", PROFILE)
    plane.key_file = plane.new_user_key(plane.data_dir.parent / "alice.jwk")
    plane.put_credential("alice", "ssh_key", plane.key_file, SSH_KEY)
    bob_key = plane.new_user_key(plane.data_dir.parent / "bob.jwk")
    plane.put_credential("bob", "bob_only", bob_key, b"bob's secret")
    with plane:
        plane.start()
        yield plane


@pytest.fixture
def run(cp):
    """A freshly redeemed token: (provisioning token, machine secret hash, redeem answer)."""
    token = cp.mint("dev", "alice")
    h = secret_hash()
    status, body, dummy = redeem(cp, token, h)
    assert status == 200, body
    return token, h, body


def test_init_layout_and_modes(tmp_path):
    plane = ControlPlane(tmp_path / "data").init(issuer="acme")
    d = plane.data_dir

    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    assert mode(d) == 0o700
    for secret in ["admin.key", "ca-key.pem", "server-key.pem", "controlplane.db", "config.json"]:
        assert mode(d / secret) == 0o600, secret
    pems = list((d / "keys").glob("*.pem"))
    assert len(pems) == 1 and mode(pems[0]) == 0o600
    meta = json.loads(pems[0].with_suffix(".json").read_text())
    assert meta["kid"] == pems[0].stem and isinstance(meta["created"], int)
    config = json.loads((d / "config.json").read_text())
    assert (config["issuer"], config["max_ttl"], config["default_ttl"]) == ("acme", 86400, 3600)
    assert len(plane.admin_key) >= 32
    again = plane.cli("init", "--data", str(d), check=False)
    assert again.returncode != 0 and "refusing" in again.stderr
    assert plane.admin_key not in again.stdout + again.stderr
    with sqlite3.connect(plane.db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_jwks_shape(cp):
    status, body, dummy = api(cp, "GET", "/.well-known/jwks.json")
    assert status == 200
    (key,) = body["keys"]
    assert set(key) == {"kty", "alg", "use", "kid", "n", "e"}
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert key["kid"] == signing_key(cp)[0]


def test_mint_over_api_and_validate_manifest(cp):
    assert code_of(api(cp, "POST", "/v1/tokens", {"profile": "dev", "user": "alice"})) == "unauthorized"
    assert code_of(api(cp, "POST", "/v1/tokens", {"profile": "dev", "user": "alice"}, bearer="wrong")) == "unauthorized"
    assert code_of(api(cp, "POST", "/v1/tokens", {"profile": "nope", "user": "alice"}, bearer=cp.admin_key)) == "not_found"
    assert api(cp, "POST", "/v1/tokens", {"profile": "dev", "user": "alice", "ttl": 86401},
               bearer=cp.admin_key)[0] == 400
    status, minted, dummy = api(cp, "POST", "/v1/tokens", {"profile": "dev", "user": "alice", "ttl": 600},
                                bearer=cp.admin_key)
    assert status == 201
    assert minted["fingerprint"] == hashlib.sha256(minted["token"].encode()).hexdigest()
    assert abs(minted["expires_at"] - (time.time() + 600)) < 5
    header = jwt.get_unverified_header(minted["token"])
    assert header["typ"] == "bs-provision+jwt" and header["alg"] == "RS256"

    status, body, dummy = api(cp, "POST", "/v1/tokens/validate", {"token": minted["token"]})
    assert status == 200, body
    assert (body["valid"], body["status"], body["profile"], body["user"]) == (True, "unused", "dev", "alice")
    assert body["fingerprint"] == minted["fingerprint"] and body["expires_at"] == minted["expires_at"]
    by_path = {e["path"]: e for e in body["manifest"]}
    assert by_path["~/.zshrc"] == {"path": "~/.zshrc", "mode": "0644", "credential": None,
                                   "sha256": hashlib.sha256(b"export EDITOR=vim\n").hexdigest()}
    assert by_path["~/.ssh/id_ed25519"] == {"path": "~/.ssh/id_ed25519", "mode": "0600", "sha256": None,
                                            "credential": "ssh_key"}
    events = cp.audit()
    assert any(e["type"] == "token.minted" and e["data"]["fingerprint"] == minted["fingerprint"]
               and e["actor"] == "admin" and e["data"]["ttl"] == 600 for e in events)
    assert any(e["type"] == "token.validated" and e["data"] == {
        "fingerprint": minted["fingerprint"], "status": "unused", "profile": "dev", "user": "alice"} for e in events)


def test_cli_mint_refusals(cp):
    d = str(cp.data_dir)
    for ttl in ("0", "-5", "86401"):
        result = cp.cli("mint", "--data", d, "--profile", "dev", "--user", "alice", "--ttl", ttl, check=False)
        assert result.returncode != 0 and result.stdout == ""
    assert cp.cli("mint", "--data", d, "--profile", "ghost", "--user", "alice", check=False).returncode != 0
    token = cp.mint("dev", "alice", ttl=120)
    assert token.count(".") == 2 and "\n" not in token
    minted = [e for e in cp.audit() if e["type"] == "token.minted"][-1]
    assert minted["actor"] == "cli" and minted["data"]["ttl"] == 120


def test_redeem_once_then_already_redeemed(cp, run):
    token, h, body = run
    assert body["repeat"] is False
    assert body["profile"]["name"] == "dev" and body["profile"]["version"] == 1
    files = {f["path"]: f for f in body["profile"]["files"]}
    assert base64.b64decode(files["~/.zshrc"]["content_base64"]) == b"export EDITOR=vim\n"
    assert files["~/.ssh/id_ed25519"] == {"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"}
    assert set(body["credentials"]) == {"ssh_key"}
    keys = envelope.parse_user_keys(cp.key_file.read_text())
    assert envelope.decrypt(keys, body["credentials"]["ssh_key"]) == SSH_KEY
    run_claims = jwt.decode(body["run_token"], options={"verify_signature": False})
    prov_claims = jwt.decode(token, options={"verify_signature": False})
    assert run_claims["run"] == body["run_id"] and run_claims["aud"] == "bootstrap-saas:run"
    assert run_claims["exp"] == prov_claims["exp"] + 3600 == body["run_token_expires_at"]

    status, refused, dummy = redeem(cp, token, secret_hash(), machine_id="m2")
    assert (status, refused["error"]["code"]) == (409, "already_redeemed")
    fp = hashlib.sha256(token.encode()).hexdigest()
    assert token not in refused["error"]["message"]
    assert api(cp, "POST", "/v1/tokens/validate", {"token": token})[1]["status"] == "redeemed"
    events = cp.audit()
    started = [e for e in events if e["type"] == "run.started" and e["run_id"] == body["run_id"]]
    assert started and started[0]["data"]["fingerprint"] == fp and started[0]["data"]["client_address"] == "127.0.0.1"
    assert started[0]["data"]["machine"]["id"] == "m1"
    assert any(e["type"] == "token.redeem_refused" and e["data"]["fingerprint"] == fp
               and e["data"]["reason"] == "already_redeemed" for e in events)


def test_jwe_envelope_decrypts_with_jwcrypto(cp, run):
    jwk = pytest.importorskip("jwcrypto.jwk")
    jwe = pytest.importorskip("jwcrypto.jwe")
    keyset = jwk.JWKSet.from_json(cp.key_file.read_text())
    token = jwe.JWE()
    token.deserialize(run[2]["credentials"]["ssh_key"], key=keyset)
    assert token.payload == SSH_KEY
    header = envelope.header(run[2]["credentials"]["ssh_key"])
    assert (header["bs_name"], header["bs_user"], header["bs_ver"]) == ("ssh_key", "alice", 1)


def test_repeat_with_same_machine_secret_returns_same_run(cp, run):
    token, h, first = run
    status, again, dummy = redeem(cp, token, h)
    assert status == 200, again
    assert again["repeat"] is True and again["run_id"] == first["run_id"]
    assert again["run_token"] != first["run_token"]


def test_concurrent_redeems_have_exactly_one_winner(cp):
    token = cp.mint("dev", "alice")
    answers = []
    threads = [threading.Thread(target=lambda i=i: answers.append(redeem(cp, token, secret_hash(), f"c{i}")))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = sorted(a[0] for a in answers)
    assert statuses == [200] + [409] * 7, [a[1] for a in answers]


def test_missing_credential_consumes_nothing(cp):
    cp.set_profile("needs-cred", {"files": [{"path": "~/.ssh/k", "mode": "0600", "credential": "absent"}]})
    token = cp.mint("needs-cred", "alice")
    status, body, dummy = redeem(cp, token, secret_hash())
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert "absent" in body["error"]["message"] and "nothing was consumed" in body["error"]["message"]
    assert api(cp, "POST", "/v1/tokens/validate", {"token": token})[1]["status"] == "unused"


def test_expired_token_refused_before_the_database(cp):
    kid, key = signing_key(cp)
    now = int(time.time())
    expired = forge(key, kid, iat=now - 100, nbf=now - 100, exp=now - 40)  # past the 30 s leeway
    for path in ("/v1/tokens/validate", "/v1/tokens/redeem"):
        body = {"token": expired} if path.endswith("validate") else {
            "token": expired, "machine": {"id": "x", "hostname": "x"}, "machine_secret_hash": secret_hash()}
        status, answer, dummy = api(cp, "POST", path, body)
        assert (status, answer["error"]["code"]) == (401, "token_expired"), answer
        assert "expired at" in answer["error"]["message"]


def test_expired_minted_token_with_zero_leeway(tmp_path):
    plane = ControlPlane(tmp_path / "data").init()
    config = json.loads((plane.data_dir / "config.json").read_text())
    config["leeway"] = 0
    (plane.data_dir / "config.json").write_text(json.dumps(config))
    plane.set_profile("dev", {"files": []})
    token = plane.mint("dev", "alice", ttl=1)
    with plane:
        plane.start()
        time.sleep(2.1)
        assert code_of(api(plane, "POST", "/v1/tokens/validate", {"token": token})) == "token_expired"


def test_token_signed_by_another_key_is_invalid(cp):
    kid, dummy = signing_key(cp)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for token in (forge(stranger, kid), forge(stranger, "unknown-kid"), forge("a" * 32, kid, alg="HS256")):
        status, body, dummy = api(cp, "POST", "/v1/tokens/validate", {"token": token})
        assert (status, body["error"]["code"]) == (401, "token_invalid"), body
    assert code_of(api(cp, "POST", "/v1/tokens/validate", {"token": "not.a.jwt"})) == "token_malformed"
    assert api(cp, "POST", "/v1/tokens/validate", {"token": "x" * 9000})[0] == 413


def test_audience_issuer_and_lifetime_checks(cp):
    kid, key = signing_key(cp)
    cases = [
        (forge(key, kid, aud="bootstrap-saas:run"), "token_wrong_audience"),
        (forge(key, kid, iss="someone-else"), "token_wrong_issuer"),
        (forge(key, kid, nbf=int(time.time()) + 600), "token_not_yet_valid"),
        (forge(key, kid, exp=int(time.time()) + 90000), "token_invalid"),
    ]
    for token, code in cases:
        assert code_of(api(cp, "POST", "/v1/tokens/validate", {"token": token})) == code


def test_token_types_cannot_be_swapped(cp, run):
    token, h, body = run
    status, answer, dummy = redeem(cp, body["run_token"], h)
    assert (status, answer["error"]["code"]) == (401, "token_wrong_type")
    event = {"id": secrets.token_hex(16), "type": "task.completed", "run_id": body["run_id"], "data": {}}
    status, answer, dummy = api(cp, "POST", "/v1/audit/events", {"events": [event]}, bearer=token)
    assert (status, answer["error"]["code"]) == (401, "token_wrong_type")


def test_audit_events_duplicates_and_run_finished(cp, run):
    token, h, body = run
    run_token, run_id = body["run_token"], body["run_id"]
    ev = {"id": secrets.token_hex(16), "type": "file.written", "run_id": run_id, "task": "home_files",
          "subject": "~/.zshrc", "data": {"sha256": "ab" * 32, "mode": "0644"}}
    status, first, dummy = api(cp, "POST", "/v1/audit/events", {"events": [ev]}, bearer=run_token)
    assert status == 200, first
    (ack,) = first["events"]
    assert ack["duplicate"] is False and ack["id"] == ev["id"] and len(ack["hash"]) == 64
    status, again, dummy = api(cp, "POST", "/v1/audit/events", {"events": [ev]}, bearer=run_token)
    assert status == 200 and again["events"] == [dict(ack, duplicate=True)]
    changed = dict(ev, data={"sha256": "cd" * 32, "mode": "0644"})
    assert code_of(api(cp, "POST", "/v1/audit/events", {"events": [changed]}, bearer=run_token)) == "duplicate_event_id"
    assert api(cp, "POST", "/v1/audit/events", {"events": [dict(ev, id=secrets.token_hex(16), type="token.minted")]},
               bearer=run_token)[0] == 400
    assert api(cp, "POST", "/v1/audit/events", {"events": [dict(ev, id="xyz")]}, bearer=run_token)[0] == 400
    stored = [e for e in cp.audit() if e["id"] == ev["id"]]
    assert len(stored) == 1 and stored[0]["actor"] == "m1/host-m1" and stored[0]["client_address"] == "127.0.0.1"

    # Credentials: own 200, another user's 403, unknown 404.
    status, cred, dummy = api(cp, "GET", "/v1/credentials/ssh_key", bearer=run_token)
    assert status == 200 and cred["envelope"] == body["credentials"]["ssh_key"]
    assert code_of(api(cp, "GET", "/v1/credentials/bob_only", bearer=run_token)) == "forbidden"
    assert code_of(api(cp, "GET", "/v1/credentials/nothing", bearer=run_token)) == "not_found"

    # Another machine's run is off limits.
    other = redeem(cp, cp.mint("dev", "alice"), secret_hash(), "m9")[1]
    assert "run_id" in other, other
    foreign = dict(ev, id=secrets.token_hex(16), run_id=other["run_id"])
    assert code_of(api(cp, "POST", "/v1/audit/events", {"events": [foreign]}, bearer=run_token)) == "forbidden"

    fin = {"id": secrets.token_hex(16), "type": "run.finished", "run_id": run_id, "task": "audit_event",
           "subject": "", "data": {"written": 1}}
    assert api(cp, "POST", "/v1/audit/events", {"events": [fin]}, bearer=run_token)[0] == 200
    status, gone, dummy = api(cp, "POST", "/v1/audit/events", {"events": [ev]}, bearer=run_token)
    assert (status, gone["error"]["code"]) == (410, "gone")
    assert api(cp, "GET", "/v1/credentials/ssh_key", bearer=run_token)[0] == 410
    assert api(cp, "POST", "/v1/tokens/validate", {"token": token})[1]["status"] == "finished"
    assert code_of(redeem(cp, token, h)) == "run_finished"


def test_profile_schema_is_strict_but_paths_are_not_filtered(cp):
    bad = [
        {"files": [{"path": "~/.x", "mode": "0644", "content": "a", "owner": "root"}]},
        {"files": [{"path": "~/.x", "mode": "0644", "content": "a", "credential": "c"}]},
        {"files": [{"path": "~/.x", "mode": "0644"}]},
        {"files": [{"path": "~/.x", "mode": 420, "content": "a"}]},
        {"files": [{"path": "~/.x", "mode": "0644", "content_base64": "!!!"}]},
        {"files": [], "extra": 1},
    ]
    for manifest in bad:
        result = cp.cli("profile", "set", "--data", str(cp.data_dir), "bad", _write(cp, manifest), check=False)
        assert result.returncode != 0, manifest
        status, body, dummy = api(cp, "PUT", "/v1/profiles/bad", manifest, bearer=cp.admin_key)
        assert (status, body["error"]["code"]) == (400, "bad_request"), manifest
    hostile = {"files": [{"path": "/etc/passwd", "mode": "0644", "content": "x"},
                         {"path": "~/.config/bootstrap-saas/run.json", "mode": "0600", "content": "{}"}]}
    status, body, dummy = api(cp, "PUT", "/v1/profiles/hostile", hostile, bearer=cp.admin_key)
    assert (status, body) == (200, {"name": "hostile", "version": 1})
    assert api(cp, "PUT", "/v1/profiles/hostile", hostile)[0] == 401
    yaml_file = cp.data_dir.parent / "p.yaml"
    yaml_file.write_text('files:\n  - path: "~/.bashrc"\n    mode: "0644"\n    content: "x"\n')
    assert "version 2" in cp.cli("profile", "set", "--data", str(cp.data_dir), "hostile", str(yaml_file)).stdout
    updated = [e for e in cp.audit() if e["type"] == "profile.updated" and e["subject"] == "hostile"]
    assert updated[-1]["data"]["version"] == 2
    assert updated[-1]["data"]["diff"]["added_paths"] == ["~/.bashrc"]
    assert updated[-1]["data"]["diff"]["removed"] == 2


def _write(cp, manifest):
    path = cp.data_dir.parent / f"m-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(manifest))
    return str(path)


def test_audit_is_append_only_and_verify_names_the_broken_seq(tmp_path):
    plane = ControlPlane(tmp_path / "data").init()
    plane.set_profile("dev", {"files": []})
    for dummy in range(3):
        plane.mint("dev", "alice")
    ok = plane.audit_verify()
    assert ok.returncode == 0 and "audit chain OK: 4 events" in ok.stdout
    with sqlite3.connect(plane.db_path) as db:
        for statement in ("UPDATE audit SET actor='mallory' WHERE seq=2", "DELETE FROM audit WHERE seq=2"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(statement)
    db = sqlite3.connect(plane.db_path)
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("""UPDATE audit SET data=json_set(data, '$.ttl', 1) WHERE seq=3""")
    db.commit()
    db.close()
    broken = plane.audit_verify()
    assert broken.returncode == 1 and "seq 3" in broken.stdout, broken.stdout


def test_keys_rotate_keeps_old_tokens_until_they_expire(tmp_path):
    plane = ControlPlane(tmp_path / "data").init()
    plane.set_profile("dev", {"files": []})
    with plane:
        plane.start()
        old_token = plane.mint("dev", "alice")
        old_kid = jwt.get_unverified_header(old_token)["kid"]
        plane.cli("keys", "rotate", "--data", str(plane.data_dir))
        kids = [k["kid"] for k in api(plane, "GET", "/.well-known/jwks.json")[1]["keys"]]
        assert len(kids) == 2 and old_kid in kids
        new_token = plane.mint("dev", "alice")
        new_kid = jwt.get_unverified_header(new_token)["kid"]
        assert new_kid != old_kid and new_kid in kids
        assert api(plane, "POST", "/v1/tokens/validate", {"token": old_token})[0] == 200
        assert api(plane, "POST", "/v1/tokens/validate", {"token": new_token})[0] == 200
        # Pretend the rotation happened long ago: everything the old key signed has expired by now.
        meta_path = plane.data_dir / "keys" / f"{old_kid}.json"
        meta = json.loads(meta_path.read_text())
        meta["retired_at"] -= 86400 + 3600 + 31
        meta_path.write_text(json.dumps(meta))
        time.sleep(0.01)
        kids = [k["kid"] for k in api(plane, "GET", "/.well-known/jwks.json")[1]["keys"]]
        assert kids == [new_kid]
        assert code_of(api(plane, "POST", "/v1/tokens/validate", {"token": old_token})) == "token_invalid"


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    plane = ControlPlane(tmp_path / "data").init()
    with plane:
        plane.start("--rate-limit", "2")
        answers = [api(plane, "GET", "/.well-known/jwks.json") for dummy in range(8)]
        limited = [a for a in answers if a[0] == 429]
        assert limited and limited[0][1]["error"]["code"] == "rate_limited"
        assert int(limited[0][2]["Retry-After"]) >= 1
        state = plane.data_dir / "server.json"
        assert json.loads(state.read_text())["url"] == plane.url
    assert not state.exists()


def test_token_values_never_reach_the_database_or_the_log(cp):
    token = cp.mint("dev", "alice")
    h = secret_hash()
    body = redeem(cp, token, h)[1]
    again = redeem(cp, token, h)[1]
    api(cp, "POST", "/v1/tokens/validate", {"token": token})
    ev = {"id": secrets.token_hex(16), "type": "task.completed", "run_id": body["run_id"], "data": {}}
    api(cp, "POST", "/v1/audit/events", {"events": [ev]}, bearer=body["run_token"])
    secrets_seen = [token, body["run_token"], again["run_token"], cp.admin_key]
    blobs = {p.name: p.read_bytes() for p in cp.data_dir.iterdir()
             if p.name.startswith("controlplane.db") or p.name == "server.log"}
    assert "server.log" in blobs and "controlplane.db" in blobs
    for name, blob in blobs.items():
        for value in secrets_seen:
            assert value.encode() not in blob, name
        for jwt_value in secrets_seen[:3]:  # not even a token's signature part
            assert jwt_value.split(".")[2].encode() not in blob, name
        assert SSH_KEY not in blob, name
    assert "POST /v1/tokens/redeem 200" in cp.log_text()
