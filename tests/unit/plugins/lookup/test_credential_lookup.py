"""The credential lookup through a real ansible-playbook: literal values, key order, errors, a real control plane.

Runs on the ansible-core in .venv; set BS_EXTRA_ANSIBLE_BINS to more bin directories (os.pathsep
separated, each with ansible-playbook and the controller requirements) to run the same playbooks on
other ansible-core versions, for example 2.16.
"""
import base64
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jwcrypto import jwe as jwc_jwe, jwk as jwc_jwk

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient
from ansible_collections.bootstrap_saas.provisioning.plugins.lookup import credential as credential_lookup
from helpers.controlplane import ControlPlane
from helpers.e2e import HOST_PYTHON, ansible_env, write_secret_vars

LOOKUP = "bootstrap_saas.provisioning.credential"
BINS = [str(Path(sys.executable).parent)] + [p for p in os.environ.get("BS_EXTRA_ANSIBLE_BINS", "").split(os.pathsep) if p]


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_jwk():
    return {"kty": "oct", "kid": "uk-" + secrets.token_hex(8), "alg": "dir", "use": "enc", "k": b64u(os.urandom(32))}


def jwcrypto_envelope(plaintext, jwk, name, user="alice"):
    protected = {"alg": "dir", "enc": "A256GCM", "kid": jwk["kid"], "bs_name": name, "bs_user": user, "bs_ver": 1}
    token = jwc_jwe.JWE(plaintext.encode(), protected=json.dumps(protected))
    token.add_recipient(jwc_jwk.JWK(**jwk))
    return token.serialize(compact=True)


def ansible_version(bindir):
    out = subprocess.run([os.path.join(bindir, "ansible-playbook"), "--version"], capture_output=True, text=True,
                         timeout=60, check=False).stdout
    return re.search(r"core ([0-9.]+)", out).group(1)


@pytest.fixture(params=BINS, ids=lambda b: "ansible-core-" + ansible_version(b))
def playbook(request, tmp_path):
    bindir = request.param

    def run(tasks, variables, *args, env=None):
        book = tmp_path / ("play-%s.yml" % secrets.token_hex(3))
        book.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], sort_keys=False))
        varfile = write_secret_vars(tmp_path / ("vars-%s.json" % secrets.token_hex(3)), variables)
        environment = ansible_env(tmp_path)
        environment["PATH"] = bindir + os.pathsep + environment["PATH"]
        environment.pop("BOOTSTRAP_SAAS_USER_KEY", None)
        environment.update(env or {})
        cmd = [os.path.join(bindir, "ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=%s" % HOST_PYTHON, "-e", "@%s" % varfile, str(book)] + list(args)
        try:
            return subprocess.run(cmd, env=environment, capture_output=True, text=True, timeout=240, cwd=str(tmp_path), check=False)
        finally:
            varfile.unlink()

    return run


@pytest.fixture
def keys(tmp_path):
    key, other = new_jwk(), new_jwk()
    key_file = tmp_path / "alice.key"
    key_file.write_text(json.dumps({"keys": [key]}))
    other_file = tmp_path / "other.key"
    other_file.write_text(json.dumps({"keys": [other]}))
    return {"key": key, "other": other, "key_file": str(key_file), "other_file": str(other_file),
            "text": json.dumps({"keys": [key]}), "other_text": json.dumps({"keys": [other]})}


def lookup_expr(*terms, **options):
    opts = "".join(", %s=%s" % (k, v) for k, v in options.items())
    return "{{ lookup('%s', %s%s) }}" % (LOOKUP, ", ".join("'%s'" % t for t in terms), opts)


def output_of(proc):
    return proc.stdout + proc.stderr


def test_stored_template_comes_out_literally_and_nothing_runs(playbook, keys, tmp_path):
    canary = tmp_path / ("pwned-%s" % secrets.token_hex(4))
    plaintext = "{{ lookup('pipe', 'touch %s') }}\na\n{{ 7*7 }}\n{%% raw %%}x{%% endraw %%}\n" % canary
    other_plain = "{{ lookup('pipe', 'id') }}"
    envelope = jwcrypto_envelope(plaintext, keys["key"], "ssh_key")
    envelopes = {"ssh_key": envelope, "api_token": jwcrypto_envelope(other_plain, keys["key"], "api_token")}
    out1, out2, out3 = (tmp_path / n for n in ("one.txt", "many.json", "file.txt"))
    src = tmp_path / "ssh_key.json"
    src.write_text(json.dumps({"name": "ssh_key", "envelope": envelope}))
    tasks = [
        {"name": "single envelope", "ansible.builtin.set_fact": {
            "secret": lookup_expr("ssh_key", envelope="envelope", user="'alice'", user_key_file="key_file")}},
        {"name": "through another fact", "ansible.builtin.set_fact": {"again": "{{ secret }}"}},
        {"ansible.builtin.copy": {"content": "{{ again }}", "dest": str(out1)}},
        {"name": "several terms", "ansible.builtin.set_fact": {
            "many": "{{ query('%s', 'ssh_key', 'api_token', envelopes=envelopes, user='alice', user_key=user_key) }}"
                    % LOOKUP}},
        {"ansible.builtin.copy": {"content": "{{ many | to_json }}", "dest": str(out2)}},
        {"name": "from a src file", "ansible.builtin.copy": {
            "content": lookup_expr("ssh_key", src="src", user_key_file="key_file"), "dest": str(out3)}},
    ]
    proc = playbook(tasks, {"envelope": envelope, "envelopes": envelopes, "key_file": keys["key_file"],
                            "user_key": keys["text"], "src": str(src)})
    assert proc.returncode == 0, output_of(proc)
    assert out1.read_text() == plaintext
    assert json.loads(out2.read_text()) == [plaintext, other_plain]
    assert out3.read_text() == plaintext
    assert not canary.exists()


def test_key_sources_in_documented_order(playbook, keys, tmp_path):
    envelope = jwcrypto_envelope("value-1", keys["key"], "ssh_key")
    out = tmp_path / "out.txt"

    def run(env=None, **options):
        tasks = [{"ansible.builtin.copy": {"content": lookup_expr("ssh_key", envelope="envelope", **options),
                                           "dest": str(out)}}]
        return playbook(tasks, {"envelope": envelope, "good": keys["text"], "bad": keys["other_text"],
                                "good_file": keys["key_file"], "bad_file": keys["other_file"]}, env=env)

    # user_key wins over user_key_file, which wins over the environment variable
    proc = run(user_key="bad", user_key_file="good_file", env={"BOOTSTRAP_SAAS_USER_KEY": keys["text"]})
    assert proc.returncode != 0 and "unknown key id" in output_of(proc)
    proc = run(user_key_file="bad_file", env={"BOOTSTRAP_SAAS_USER_KEY": keys["text"]})
    assert proc.returncode != 0 and "unknown key id" in output_of(proc)
    # empty values count as unset
    proc = run(user_key="''", user_key_file="good_file")
    assert proc.returncode == 0, output_of(proc)
    proc = run(user_key="''", user_key_file="''", env={"BOOTSTRAP_SAAS_USER_KEY": keys["text"]})
    assert proc.returncode == 0, output_of(proc)
    assert out.read_text() == "value-1"
    proc = run(env={"BOOTSTRAP_SAAS_USER_KEY": ""})
    assert proc.returncode != 0 and "no key given" in output_of(proc)


def test_errors_name_the_failed_check_and_leak_nothing(playbook, keys, tmp_path):
    canary = "CANARY-PLAINTEXT-" + secrets.token_hex(8)
    envelope = jwcrypto_envelope(canary, keys["key"], "ssh_key")
    cases = [
        ("wrong key or tampered data", dict(envelope="envelope", user_key="wrong_same_kid")),
        ("unknown key id", dict(envelope="envelope", user_key="other")),
        ("name mismatch", dict(envelopes="{'api_token': envelope}", user_key="good", _term="api_token")),
        ("user mismatch", dict(envelope="envelope", user="'bob'", user_key="good")),
        ("not found", dict(envelopes="{'other': envelope}", user_key="good")),
        ("malformed envelope", dict(envelope="envelope[:-3]", user_key="good")),
        ("is unusable", dict(envelope="envelope", user_key="'{\"kty\": \"oct\"}'")),
    ]
    wrong_same_kid = json.dumps({"keys": [dict(keys["other"], kid=keys["key"]["kid"])]})
    tasks = []
    for expected, options in cases:
        term = options.pop("_term", "ssh_key")
        tasks.append({"name": "case %s" % expected, "ignore_errors": True,
                      "ansible.builtin.debug": {"msg": lookup_expr(term, **options)}})
    proc = playbook(tasks, {"envelope": envelope, "good": keys["text"], "other": keys["other_text"],
                            "wrong_same_kid": wrong_same_kid}, "-vvvv")
    text = output_of(proc)
    for secret in (canary, keys["key"]["k"], keys["other"]["k"]):
        assert secret not in text, secret
    sections = re.split(r"^TASK \[", text, flags=re.M)[1:]
    assert len(sections) == len(cases), text
    for (expected, _options), section in zip(cases, sections):
        assert section.startswith("case %s]" % expected)
        assert "FAILED!" in section, section
        failure = section[section.index("FAILED!"):]
        assert expected in failure, (expected, section)


def test_key_options_are_never_read_from_ini():
    doc = yaml.safe_load(credential_lookup.DOCUMENTATION)
    for name, option in doc["options"].items():
        assert "ini" not in option, name
    for name in ("user_key", "user_key_file", "run_token"):
        assert "env" not in doc["options"][name] and "vars" not in doc["options"][name]


# --- against a real control plane -------------------------------------------------------------

@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    data = tmp_path_factory.mktemp("cp-lookup")
    cp = ControlPlane(data / "cp")
    cp.init()
    key_file = cp.new_user_key(data / "alice.key")
    plaintext = ("-----BEGIN OPENSSH PRIVATE KEY-----\nCANARY-%s\n{{ lookup('pipe', 'id') }}\n"
                 % secrets.token_hex(8)).encode()
    cp.put_credential("alice", "ssh_key", key_file, plaintext)
    cp.set_profile("dev", {"files": [{"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"}]})
    cp.start()
    try:
        client = ControlPlaneClient(cp.url, ca_pem=cp.ca_path.read_text())
        answer = client.post("/v1/tokens/redeem", {
            "token": cp.mint("dev", "alice"),
            "machine": {"id": "m-" + secrets.token_hex(4), "hostname": "test", "user": "alice"},
            "machine_secret_hash": secrets.token_hex(32)})
        yield {"cp": cp, "key_file": str(key_file), "plaintext": plaintext.decode(), "redeemed": answer}
    finally:
        cp.stop()


def test_fetch_from_the_control_plane_and_decrypt(playbook, control_plane, tmp_path):
    cp = control_plane["cp"]
    out, out2 = tmp_path / "fetched.txt", tmp_path / "offline.txt"
    tasks = [
        {"ansible.builtin.copy": {"dest": str(out), "content": lookup_expr(
            "ssh_key", url="url", ca_path="ca", run_token="run_token", user="'alice'", user_key_file="key_file")}},
        {"ansible.builtin.copy": {"dest": str(out2), "content": lookup_expr(
            "ssh_key", envelopes="credentials", user="'alice'", user_key_file="key_file")}},
    ]
    variables = {"url": cp.url, "ca": str(cp.ca_path), "run_token": control_plane["redeemed"]["run_token"],
                 "key_file": control_plane["key_file"], "credentials": control_plane["redeemed"]["credentials"]}
    proc = playbook(tasks, variables)
    assert proc.returncode == 0, output_of(proc)
    assert out.read_text() == control_plane["plaintext"]
    assert out2.read_text() == control_plane["plaintext"]


def test_fetch_errors(playbook, control_plane):
    cp = control_plane["cp"]
    base = {"ca": str(cp.ca_path), "run_token": control_plane["redeemed"]["run_token"],
            "key_file": control_plane["key_file"]}
    for term, url, expected in (("missing", cp.url, "control plane not found"),
                                ("ssh_key", "https://127.0.0.1:1", "control plane unreachable")):
        tasks = [{"ansible.builtin.debug": {"msg": lookup_expr(
            term, url="url", ca_path="ca", run_token="run_token", user_key_file="key_file")}}]
        proc = playbook(tasks, dict(base, url=url), "-vvvv")
        text = output_of(proc)
        assert proc.returncode != 0 and expected in text, text
        assert control_plane["redeemed"]["run_token"] not in text
        assert control_plane["plaintext"] not in text
