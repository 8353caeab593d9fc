"""Interoperability with an independent JOSE implementation (jwcrypto), in both directions."""
import json
import secrets
import sqlite3

import pytest
from jwcrypto import jwe, jwk
from jwcrypto.common import JWKeyNotFound

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient
from credential_support import LOOKUP, local_play, run_play
from helpers.controlplane import ControlPlane

VALUES = {"ssh_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nCANARY-%s\n" % secrets.token_hex(8),
          "api_token": "tok-%s \u00e9\u6f22\n" % secrets.token_hex(8)}


def jwcrypto_key():
    return jwk.JWK.generate(kty="oct", size=256, kid="uk-" + secrets.token_hex(8), alg="dir", use="enc")


def jwcrypto_envelope(key, name, plaintext, user="alice", version=1):
    protected = {"alg": "dir", "enc": "A256GCM", "kid": key["kid"], "bs_name": name, "bs_user": user,
                 "bs_ver": version}
    token = jwe.JWE(plaintext.encode("utf-8"), protected=json.dumps(protected))
    token.add_recipient(key)
    return token.serialize(compact=True)


def test_jwcrypto_envelopes_decrypt_with_the_lookup_in_a_real_playbook(tmp_path):
    old, new = jwcrypto_key(), jwcrypto_key()
    key_set = jwk.JWKSet()
    key_set.add(new)
    key_set.add(old)
    key_file = tmp_path / "alice.key"
    key_file.write_text(key_set.export(private_keys=True))
    # one envelope per key: the lookup picks each key by kid from the jwcrypto-made key set
    envelopes = {"ssh_key": jwcrypto_envelope(old, "ssh_key", VALUES["ssh_key"]),
                 "api_token": jwcrypto_envelope(new, "api_token", VALUES["api_token"], version=7)}
    out = tmp_path / "values.json"
    tasks = [{"ansible.builtin.copy": {"dest": str(out), "content": (
        "{{ query('%s', 'ssh_key', 'api_token', envelopes=envelopes, user='alice', user_key_file=key_file) "
        "| to_json }}" % LOOKUP)}}]
    proc = run_play(tmp_path, local_play(tasks), {"envelopes": envelopes, "key_file": str(key_file)})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert json.loads(out.read_text()) == [VALUES["ssh_key"], VALUES["api_token"]]


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    work = tmp_path_factory.mktemp("interop")
    cp = ControlPlane(work / "cp")
    cp.init()
    key_file = cp.new_user_key(work / "alice.key")
    for name, value in VALUES.items():
        cp.put_credential("alice", name, key_file, value.encode("utf-8"))
    cp.set_profile("dev", {"files": [{"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"}]})
    cp.start()
    try:
        yield {"cp": cp, "key_file": key_file}
    finally:
        cp.stop()


def jwcrypto_open(compact, key_set):
    token = jwe.JWE()
    token.deserialize(compact, key=key_set)
    return token.jose_header, token.payload.decode("utf-8")


def test_credential_put_envelopes_decrypt_with_jwcrypto(control_plane):
    cp, key_file = control_plane["cp"], control_plane["key_file"]
    key_set = jwk.JWKSet.from_json(key_file.read_text())
    kid = json.loads(key_file.read_text())["keys"][0]["kid"]
    client = ControlPlaneClient(cp.url, ca_pem=cp.ca_path.read_text())
    redeemed = client.post("/v1/tokens/redeem", {
        "token": cp.mint("dev", "alice"), "machine": {"id": "m-" + secrets.token_hex(4), "hostname": "interop"},
        "machine_secret_hash": secrets.token_hex(32)})
    with sqlite3.connect("file:%s?mode=ro" % cp.db_path, uri=True) as db:
        stored = dict(db.execute("SELECT name, envelope FROM credentials WHERE user='alice'"))
    for name, value in VALUES.items():
        fetched = client.get("/v1/credentials/" + name, bearer=redeemed["run_token"])
        assert fetched == {"name": name, "envelope": stored[name]}
        header, plaintext = jwcrypto_open(fetched["envelope"], key_set)
        assert plaintext == value
        assert header == {"alg": "dir", "enc": "A256GCM", "kid": kid, "bs_name": name, "bs_user": "alice",
                          "bs_ver": 1}
    assert jwcrypto_open(redeemed["credentials"]["ssh_key"], key_set)[1] == VALUES["ssh_key"]

    # after a rotation jwcrypto opens the new envelopes by kid from the grown key set
    cp.cli("credential", "rotate-key", "--data", str(cp.data_dir), "--user", "alice", "--key-file", str(key_file))
    grown = jwk.JWKSet.from_json(key_file.read_text())
    new_kid = json.loads(key_file.read_text())["keys"][0]["kid"]
    header, plaintext = jwcrypto_open(client.get("/v1/credentials/api_token", bearer=redeemed["run_token"])["envelope"],
                                      grown)
    assert (plaintext, header["kid"], header["bs_ver"]) == (VALUES["api_token"], new_kid, 2)
    # and the old key set alone cannot: jwcrypto finds no key for the new kid
    with pytest.raises(JWKeyNotFound):
        jwcrypto_open(client.get("/v1/credentials/api_token", bearer=redeemed["run_token"])["envelope"], key_set)
