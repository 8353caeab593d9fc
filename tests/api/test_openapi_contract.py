"""The real control plane's answers match docs/openapi.yaml: every documented endpoint is exercised over
HTTPS against a real server and SQLite file, and each answer is validated against the schema of its
path, method and status, errors included."""
import hashlib
import json
import secrets
import ssl
import urllib.error
import urllib.request

import jsonschema
import pytest
import yaml

from helpers.e2e import REPO
from helpers.stack import CP_USER, Stack

SPEC = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())


class Client:
    def __init__(self, cp):
        self.cp = cp
        self.ctx = ssl.create_default_context(cafile=str(cp.ca_path))
        self.seen = set()

    def call(self, method, path, template, body=None, bearer=None):
        """(status, body) of one request; the answer must match the spec for (template, method, status)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.cp.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if bearer:
            req.add_header("Authorization", "Bearer " + bearer)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=15) as resp:
                status, answer, headers = resp.status, json.loads(resp.read()), resp.headers
        except urllib.error.HTTPError as err:
            status, answer, headers = err.code, json.loads(err.read()), err.headers
        operation = SPEC["paths"][template][method.lower()]
        assert str(status) in operation["responses"], "%s %s answered %d, not in the spec" % (method, template, status)
        response = operation["responses"][str(status)]
        if "$ref" in response:
            response = resolve(response["$ref"])
        schema = response["content"]["application/json"]["schema"]
        validate(answer, schema, "%s %s %d" % (method, template, status))
        if status == 429:
            assert headers.get("Retry-After", "").isdigit()
        self.seen.add((template, method.lower()))
        return status, answer


def resolve(ref):
    node = SPEC
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def validate(instance, schema, where):
    # The spec's components are the schema registry; $refs resolve inside the spec document.
    wrapper = dict(schema, components=SPEC["components"]) if "$ref" not in schema else {
        "$ref": schema["$ref"], "components": SPEC["components"]}
    errors = sorted(jsonschema.Draft202012Validator(wrapper).iter_errors(instance), key=str)
    assert not errors, "%s: %s" % (where, "; ".join("%s at %s" % (e.message, list(e.absolute_path)) for e in errors[:5]))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("openapi"))
    try:
        yield s
    finally:
        s.cp.stop()


def test_the_spec_is_a_valid_openapi_document_whose_schemas_are_valid_json_schema():
    assert SPEC["openapi"].startswith("3.1")
    for name, schema in SPEC["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(dict(schema, components=SPEC["components"])), name
    for template, methods in SPEC["paths"].items():
        for method, operation in methods.items():
            assert operation["responses"], (template, method)


def test_every_endpoint_answers_as_documented(stack):
    c = Client(stack.cp)
    admin = stack.cp.admin_key

    status, jwks = c.call("GET", "/.well-known/jwks.json", "/.well-known/jwks.json")
    assert status == 200 and jwks["keys"]

    status, minted = c.call("POST", "/v1/tokens", "/v1/tokens", {"profile": "dev", "user": CP_USER, "ttl": 600},
                            bearer=admin)
    assert status == 201
    assert minted["fingerprint"] == hashlib.sha256(minted["token"].encode()).hexdigest()
    assert c.call("POST", "/v1/tokens", "/v1/tokens", {"profile": "dev", "user": CP_USER}, bearer="wrong")[0] == 401
    assert c.call("POST", "/v1/tokens", "/v1/tokens", {"profile": "dev", "nope": 1}, bearer=admin)[0] == 400

    status, valid = c.call("POST", "/v1/tokens/validate", "/v1/tokens/validate", {"token": minted["token"]})
    assert status == 200 and valid["status"] == "unused" and valid["manifest"]
    assert c.call("POST", "/v1/tokens/validate", "/v1/tokens/validate", {"token": "a.b.c"})[0] == 401
    assert c.call("POST", "/v1/tokens/validate", "/v1/tokens/validate", {"token": "x" * 9000})[0] == 413

    secret_hash = hashlib.sha256(secrets.token_hex(32).encode()).hexdigest()
    machine = {"id": "m-openapi", "hostname": "openapi-host", "user": "dev"}
    status, run = c.call("POST", "/v1/tokens/redeem", "/v1/tokens/redeem",
                         {"token": minted["token"], "machine": machine, "machine_secret_hash": secret_hash})
    assert status == 200 and run["repeat"] is False and run["credentials"]
    other = hashlib.sha256(b"another machine").hexdigest()
    status, refused = c.call("POST", "/v1/tokens/redeem", "/v1/tokens/redeem",
                             {"token": minted["token"], "machine": dict(machine, id="m2"), "machine_secret_hash": other})
    assert status == 409 and refused["error"]["code"] == "already_redeemed"

    name = next(iter(run["credentials"]))
    status, cred = c.call("GET", "/v1/credentials/" + name, "/v1/credentials/{name}", bearer=run["run_token"])
    assert status == 200 and cred["name"] == name
    assert c.call("GET", "/v1/credentials/nobody-has-this", "/v1/credentials/{name}", bearer=run["run_token"])[0] == 404
    assert c.call("GET", "/v1/credentials/" + name, "/v1/credentials/{name}", bearer="not-a-token")[0] == 401

    event = {"id": secrets.token_hex(16), "type": "task.completed", "run_id": run["run_id"], "task": "openapi",
             "subject": "contract", "data": {}}
    status, receipts = c.call("POST", "/v1/audit/events", "/v1/audit/events", {"events": [event]},
                              bearer=run["run_token"])
    assert status == 200 and receipts["events"][0]["duplicate"] is False
    status, again = c.call("POST", "/v1/audit/events", "/v1/audit/events", {"events": [event]}, bearer=run["run_token"])
    assert status == 200 and again["events"][0]["duplicate"] is True
    status, clash = c.call("POST", "/v1/audit/events", "/v1/audit/events",
                           {"events": [dict(event, subject="another payload")]}, bearer=run["run_token"])
    assert status == 409 and clash["error"]["code"] == "duplicate_event_id"
    finished = {"id": secrets.token_hex(16), "type": "run.finished", "run_id": run["run_id"], "task": "audit_event",
                "subject": run["run_id"], "data": {}}
    status, closing = c.call("POST", "/v1/audit/events", "/v1/audit/events", {"events": [finished]},
                             bearer=run["run_token"])
    assert status == 200
    assert c.call("GET", "/v1/credentials/" + name, "/v1/credentials/{name}", bearer=run["run_token"])[0] == 410

    status, page = c.call("GET", "/v1/audit/events?after=0&limit=5", "/v1/audit/events", bearer=admin)
    assert status == 200 and len(page["events"]) == 5
    assert c.call("GET", "/v1/audit/events", "/v1/audit/events", bearer="wrong")[0] == 401
    assert c.call("GET", "/v1/audit/checkpoints", "/v1/audit/checkpoints")[0] == 200
    assert c.call("GET", "/v1/audit/checkpoint-keys", "/v1/audit/checkpoint-keys")[0] == 200
    assert c.call("GET", "/v1/audit/schema", "/v1/audit/schema")[0] == 200

    status, stored = c.call("PUT", "/v1/profiles/openapi", "/v1/profiles/{name}",
                            {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "x\n"}]}, bearer=admin)
    assert status == 200 and stored == {"name": "openapi", "version": 1}
    assert c.call("PUT", "/v1/profiles/openapi", "/v1/profiles/{name}", {"files": []}, bearer="wrong")[0] == 401

    documented = {(t, m) for t, methods in SPEC["paths"].items() for m in methods}
    assert documented - c.seen == set(), "documented but not exercised"
