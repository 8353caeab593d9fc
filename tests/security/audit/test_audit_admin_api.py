"""Admin actions through the API are sessions (auth.login / auth.logout); the CLI acts through the API;
every stored event matches the documented JSON Schema, which the server enforces."""
import json
import os
import secrets
import subprocess
from pathlib import Path

import jsonschema
import pytest

from helpers.controlplane import ControlPlane, _executable

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import make_event
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient, ControlPlaneError)

REPO = Path(__file__).resolve().parents[3]
SCHEMA_DOC = REPO / "docs" / "audit-events.schema.json"


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    work = tmp_path_factory.mktemp("admin")
    cp = ControlPlane(work / "data").init()
    cp.key_file = work / "admin.key"
    cp.key_file.write_text(cp.admin_key + "\n")
    cp.manifest = work / "dev.yml"
    cp.manifest.write_text('files:\n  - path: "~/.zshrc"\n    mode: "0644"\n    content: "x"\n')
    cp.start()
    yield cp
    cp.stop()


def remote(cp, *args, env_key=None, check=True):
    """bs-controlplane ARGS --url URL --ca CA, the admin key from the file, or else from the environment."""
    where = ["--url", cp.url, "--ca", str(cp.ca_path)]
    env = dict(os.environ)
    env.pop("BOOTSTRAP_SAAS_ADMIN_KEY", None)
    if env_key is None:
        where += ["--admin-key-file", str(cp.key_file)]
    elif env_key:
        env["BOOTSTRAP_SAAS_ADMIN_KEY"] = env_key
    result = subprocess.run([_executable(), *map(str, args), *where],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_cli_acts_through_the_api_and_each_admin_request_is_a_session(cp):
    assert "profile dev version 1" in remote(cp, "profile", "set", "dev", cp.manifest, env_key=cp.admin_key).stdout
    token = remote(cp, "mint", "--profile", "dev", "--user", "alice").stdout.strip()
    assert token.count(".") == 2
    events = json.loads(remote(cp, "audit", "list", "--json").stdout)
    logins = [e for e in events if e["type"] == "auth.login"]
    logouts = {e["data"]["session"]: e for e in events if e["type"] == "auth.logout"}
    assert [e["data"]["route"] for e in logins] == ["PUT /v1/profiles/dev", "POST /v1/tokens",
                                                    "GET /v1/audit/events"]
    for login in logins[:2]:  # the listing's own logout comes after the page it answered
        assert login["data"]["provider"] == "admin-key" and login["client_address"] == "127.0.0.1"
        logout = logouts[login["data"]["session"]]
        assert logout["seq"] > login["seq"] and logout["data"]["status"] in (200, 201)
        action = [e for e in events if login["seq"] < e["seq"] < logout["seq"]]
        assert [e["type"] for e in action] == (["profile.updated"] if "profiles" in login["data"]["route"]
                                               else ["token.minted"])
    assert cp.admin_key not in json.dumps(events)


def test_a_bad_or_missing_admin_key_opens_no_session(cp):
    before = len(cp.audit())
    bad = remote(cp, "mint", "--profile", "dev", "--user", "alice", env_key="not-the-admin-key", check=False)
    assert bad.returncode == 2 and "HTTP 401 unauthorized" in bad.stderr and "not-the-admin-key" not in bad.stderr
    missing = remote(cp, "audit", "list", env_key="", check=False)
    assert missing.returncode == 2 and "--url needs the admin key" in missing.stderr
    assert len(cp.audit()) == before


def test_every_stored_event_matches_the_documented_schema(cp):
    schema = json.loads(SCHEMA_DOC.read_text())
    assert schema == json.loads(cp.cli("audit", "schema").stdout)  # the file is the server's own schema
    client = ControlPlaneClient(cp.url, cp.ca_path.read_text(), 10)
    assert client.get("/v1/audit/schema") == schema
    jsonschema.Draft202012Validator.check_schema(schema)
    answer = client.post("/v1/tokens/redeem", {"token": cp.mint("dev", "alice"),
                                               "machine": {"id": "m1", "hostname": "h1"},
                                               "machine_secret_hash": secrets.token_hex(32)})
    run_id, run_token = answer["run_id"], answer["run_token"]
    client.post("/v1/audit/events", {"events": [
        make_event(run_id, "home_files", "file.written", "~/.zshrc", {"mode": "0644", "sha256": "a" * 64}),
        make_event(run_id, "home_files", "file.denied", "/etc/passwd", {"rule": "absolute-path"})]}, bearer=run_token)
    events = cp.audit()
    assert {"token.minted", "run.started", "file.written", "file.denied", "profile.updated"} <= {e["type"] for e in events}
    for event in events:
        jsonschema.validate(event, schema)

    refused = [
        ({"mode": "0644", "content": "export SECRET=1"}, "unknown field 'content'"),
        ({"mode": "644"}, "data.mode: must match"),
        ({"mode": "0644", "sha256": "not-a-digest"}, "data.sha256: must match"),
    ]
    for data, message in refused:
        event = make_event(run_id, "home_files", "file.written", "~/.bashrc", data)
        with pytest.raises(ControlPlaneError) as e:
            client.post("/v1/audit/events", {"events": [event]}, bearer=run_token)
        assert e.value.status == 400 and message in e.value.message, e.value.message
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(dict(events[-1], type="file.written", data=data), schema)
    long_value = make_event(run_id, "home_files", "task.completed", "dev", {"note": "x" * 300})
    with pytest.raises(ControlPlaneError) as e:
        client.post("/v1/audit/events", {"events": [long_value]}, bearer=run_token)
    assert "data.note: must be at most 256 characters" in e.value.message


def test_checkpoint_keys_are_published_at_an_endpoint_and_in_the_data_dir(cp):
    client = ControlPlaneClient(cp.url, cp.ca_path.read_text(), 10)
    answer = client.post("/v1/tokens/redeem", {"token": cp.mint("dev", "alice"),
                                               "machine": {"id": "m2", "hostname": "h2"},
                                               "machine_secret_hash": secrets.token_hex(32)})
    finished = client.post("/v1/audit/events", {"events": [make_event(answer["run_id"], "audit_event", "run.finished",
                                                                      answer["run_id"], {})]},
                           bearer=answer["run_token"])
    keys = client.get("/v1/audit/checkpoint-keys")["keys"]
    assert [k["kid"] for k in keys] == [finished["checkpoint"]["kid"]] and keys[0]["alg"] == "Ed25519"
    assert json.loads((cp.data_dir / "audit-keys" / (keys[0]["kid"] + ".json")).read_text()) == keys[0]
    assert finished["checkpoint"] in client.get("/v1/audit/checkpoints")["checkpoints"]
    # The receipt of run.finished can be fetched again with the revoked token (its answer may have been
    # lost); any other event under that token stays refused.
    again = client.post("/v1/audit/events", {"events": [make_event(answer["run_id"], "audit_event", "run.finished",
                                                                   answer["run_id"], {})]}, bearer=answer["run_token"])
    assert again["events"] == [dict(finished["events"][0], duplicate=True)]
    with pytest.raises(ControlPlaneError) as e:
        client.post("/v1/audit/events", {"events": [make_event(answer["run_id"], "home_files", "task.completed",
                                                               "dev", {})]}, bearer=answer["run_token"])
    assert e.value.status == 410
