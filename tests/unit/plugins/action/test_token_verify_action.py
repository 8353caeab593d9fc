"""token_verify through a real ansible-playbook against a real control plane (HTTPS, SQLite).

Set BS_EXTRA_ANSIBLE_BINS (see tests/unit/plugins/lookup/test_credential_lookup.py) to run on more
ansible-core versions.
"""
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient
from helpers.controlplane import ControlPlane
from helpers.e2e import HOST_PYTHON, ansible_env, write_secret_vars

BINS = [str(Path(sys.executable).parent)] + [p for p in os.environ.get("BS_EXTRA_ANSIBLE_BINS", "").split(os.pathsep) if p]
MANIFEST = {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "export EDITOR=vim\n"},
                      {"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"}]}


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    data = tmp_path_factory.mktemp("cp-action")
    plane = ControlPlane(data / "cp")
    plane.init()
    key_file = plane.new_user_key(data / "alice.key")
    plane.put_credential("alice", "ssh_key", key_file, b"not used by these tests\n")
    plane.set_profile("dev", MANIFEST)
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture(params=BINS, ids=lambda b: Path(b).parent.name)
def verify(request, tmp_path, cp):
    """Run token_verify (registered as `out`) on N local hosts; returns (process, {host: result})."""
    bindir = request.param

    def run(token, *args, hosts=1, **options):
        results = tmp_path / ("results-%s" % secrets.token_hex(3))
        results.mkdir()
        params = {"url": "{{ cp_url }}", "ca_path": "{{ cp_ca }}", "token": "{{ provisioning_token }}"}
        params.update(options)
        tasks = [
            {"name": "verify", "bootstrap_saas.provisioning.token_verify": params, "register": "out",
             "ignore_errors": True},
            {"ansible.builtin.copy": {"content": "{{ out | to_json }}", "dest": str(results) + "/{{ inventory_hostname }}.json"},
             "check_mode": False},
        ]
        book = tmp_path / "play.yml"
        book.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}], sort_keys=False))
        inventory = tmp_path / "inventory.ini"
        inventory.write_text("".join("host%d ansible_connection=local ansible_python_interpreter=%s\n"
                                     % (i, HOST_PYTHON) for i in range(hosts)))
        varfile = write_secret_vars(tmp_path / "vars.json", {"provisioning_token": token, "cp_url": cp.url,
                                                             "cp_ca": str(cp.ca_path)})
        env = ansible_env(tmp_path)
        env["PATH"] = bindir + os.pathsep + env["PATH"]
        try:
            proc = subprocess.run([os.path.join(bindir, "ansible-playbook"), "-i", str(inventory), "-e", "@%s" % varfile,
                                   str(book)] + list(args), env=env, capture_output=True, text=True, timeout=240,
                                  cwd=str(tmp_path), check=False)
        finally:
            varfile.unlink()
        return proc, {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}

    return run


def assert_token_absent(proc, token):
    text = proc.stdout + proc.stderr
    assert token not in text
    assert token.split(".")[2] not in text  # the signature alone is enough to rebuild it


def jwks_kids(cp):
    client = ControlPlaneClient(cp.url, ca_pem=cp.ca_path.read_text())
    return [k["kid"] for k in client.get("/.well-known/jwks.json")["keys"]]


def test_genuine_token_verifies_and_never_shows(verify, cp):
    token = cp.mint("dev", "alice", ttl=600)
    proc, results = verify(token, "-vvv", hosts=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_token_absent(proc, token)
    fingerprint = hashlib.sha256(token.encode()).hexdigest()
    for result in results.values():
        assert result.get("failed") is not True, result
        assert result["changed"] is False
        assert result["fingerprint"] == fingerprint
        assert result["profile"] == "dev" and result["user"] == "alice" and result["status"] == "unused"
        assert result["kid"] in jwks_kids(cp)
        assert abs(result["expires_at"] - (time.time() + 600)) < 120
        assert [(e["path"], e["credential"]) for e in result["manifest"]] == [("~/.zshrc", None),
                                                                              ("~/.ssh/id_ed25519", "ssh_key")]
        assert token not in json.dumps(result)
    validated = [e for e in cp.audit() if e["type"] == "token.validated"
                 and json.dumps(e).find(fingerprint) >= 0]
    assert len(validated) == 2


def test_check_mode_verifies_and_consumes_nothing(verify, cp):
    token = cp.mint("dev", "alice", ttl=600)
    proc, results = verify(token, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert results["host0"]["status"] == "unused"
    proc, results = verify(token)
    assert results["host0"]["status"] == "unused"


def test_redeemed_token_is_reported_not_failed(verify, cp):
    token = cp.mint("dev", "alice", ttl=600)
    client = ControlPlaneClient(cp.url, ca_pem=cp.ca_path.read_text())
    client.post("/v1/tokens/redeem", {"token": token, "machine": {"id": "m1", "hostname": "h", "user": "alice"},
                                      "machine_secret_hash": secrets.token_hex(32)})
    proc, results = verify(token)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert results["host0"].get("failed") is not True
    assert results["host0"]["status"] == "redeemed"


def test_refusals_say_why_and_never_show_the_token(verify, cp):
    genuine = cp.mint("dev", "alice", ttl=600)
    head, body, sig = genuine.split(".")
    forged = "%s.%s.%s" % (head, body, sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:])
    short = cp.mint("dev", "alice", ttl=1)
    time.sleep(2.5)
    cases = [
        (forged, {}, "bad_signature"),
        (short, {"leeway": 0}, "expired"),
        (genuine, {"audience": "bootstrap-saas:run"}, "wrong_audience"),
        (genuine, {"issuer": "someone-else"}, "wrong_issuer"),
        (genuine, {"max_ttl": 60}, "ttl_too_long"),
        ("x.y", {}, "malformed"),
    ]
    for token, options, reason in cases:
        proc, results = verify(token, "-vvv", **options)
        result = results["host0"]
        assert result["failed"] is True and result["reason"] == reason, result
        fingerprint = hashlib.sha256(token.encode()).hexdigest()
        assert result["msg"].startswith("token refused (%s): " % reason)
        assert "(fingerprint sha256:%s...)" % fingerprint[:16] in result["msg"]
        assert result["fingerprint"] == fingerprint
        if "." in token and len(token.split(".")) == 3:
            assert_token_absent(proc, token)
    assert "the token expired at " in verify(short, leeway=0)[1]["host0"]["msg"]


def test_unreachable_jwks_fails_closed(verify, cp):
    token = cp.mint("dev", "alice", ttl=600)
    proc, results = verify(token, "-vvv", url="https://127.0.0.1:1")
    result = results["host0"]
    assert result["failed"] is True and result["reason"] == "jwks_unavailable", result
    assert "fail closed" in result["msg"] and "unreachable" in result["msg"]
    assert_token_absent(proc, token)


def test_wrong_ca_fails_closed(verify, cp, tmp_path):
    other = ControlPlane(tmp_path / "other-cp")
    other.init()
    token = cp.mint("dev", "alice", ttl=600)
    proc, results = verify(token, ca_path=str(other.ca_path))
    result = results["host0"]
    assert result["failed"] is True and result["reason"] == "jwks_unavailable", result
    assert "certificate" in result["msg"]


def test_missing_ca_file_is_reported(verify, cp, tmp_path):
    token = cp.mint("dev", "alice", ttl=600)
    proc, results = verify(token, ca_path=str(tmp_path / "nope.pem"))
    result = results["host0"]
    assert result["failed"] is True and "cannot read ca_path" in result["msg"], result
    assert_token_absent(proc, token)
