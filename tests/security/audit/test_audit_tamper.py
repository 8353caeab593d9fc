"""Tampering with the SQLite file directly, as an attacker would: drop the triggers, then edit, delete,
reorder, or rewrite the tail and recompute the chain. `audit verify` names the first broken seq, or the
checkpoint that no longer matches, every time."""
import base64
import contextlib
import io
import json
import shutil
import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from bootstrap_controlplane import cli
from bootstrap_controlplane.audit import row_hash
from bootstrap_controlplane.checkpoints import signed_payload
from helpers.controlplane import ControlPlane

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import make_event
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient

FIELDS = ("seq", "id", "type", "time", "actor", "client_address", "run_id", "task", "subject", "data")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A data dir with two finished runs (so two signed checkpoints), a key rotation between them."""
    cp = ControlPlane(tmp_path_factory.mktemp("tamper") / "data").init()
    cp.set_profile("dev", {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "x\n"}]})
    with cp:
        cp.start()
        client = ControlPlaneClient(cp.url, cp.ca_path.read_text(), 10)
        for number in range(2):
            answer = client.post("/v1/tokens/redeem", {
                "token": cp.mint("dev", "alice"), "machine": {"id": "m%d" % number, "hostname": "h%d" % number},
                "machine_secret_hash": "%064x" % (number + 1)})
            run_id = answer["run_id"]
            events = [make_event(run_id, "home_files", "file.written", "~/.zshrc", {"mode": "0644", "sha256": "a" * 64}),
                      make_event(run_id, "home_files", "task.completed", "dev", {"files": 1})]
            client.post("/v1/audit/events", {"events": events}, bearer=answer["run_token"])
            done = client.post("/v1/audit/events", {"events": [make_event(run_id, "audit_event", "run.finished",
                                                                          run_id, {"files": 1})]},
                               bearer=answer["run_token"])
            assert done["checkpoint"]["seq"] == done["events"][0]["seq"]
            if number == 0:
                cp.cli("audit", "rotate-key", "--data", cp.data_dir)
        pinned = client.get("/v1/audit/checkpoint-keys")
    assert len(pinned["keys"]) == 2 and pinned["keys"][0]["retired_at"] is not None
    assert not list((cp.data_dir / "audit-keys").glob(pinned["keys"][0]["kid"] + ".pem"))  # private half gone
    keys_file = cp.data_dir.parent / "pinned-keys.json"
    keys_file.write_text(json.dumps(pinned))
    return cp, keys_file


@pytest.fixture
def copy(pristine, tmp_path):
    source, dummy = pristine
    data = tmp_path / "data"
    shutil.copytree(source.data_dir, data)
    return ControlPlane(data)


def attack(cp, *statements):
    db = sqlite3.connect(str(cp.db_path))
    for trigger in ("audit_no_update", "audit_no_delete", "audit_checkpoints_no_update", "audit_checkpoints_no_delete"):
        db.execute("DROP TRIGGER IF EXISTS %s" % trigger)
    for statement in statements:
        db.execute(statement)
    db.commit()
    return db


def rows(db):
    db.row_factory = sqlite3.Row
    return [dict(r) for r in db.execute("SELECT * FROM audit ORDER BY seq")]


def recompute_from(db, first_seq):
    """Recompute prev_hash and hash from first_seq to the end: a chain that verifies by itself."""
    prev = None
    for row in rows(db):
        if row["seq"] >= first_seq:
            fields = {k: row[k] for k in FIELDS}
            fields["data"] = json.loads(row["data"])
            digest = row_hash(prev, fields)
            db.execute("UPDATE audit SET prev_hash=?, hash=? WHERE seq=?", (prev, digest, row["seq"]))
            prev = digest
        else:
            prev = row["hash"]
    db.commit()


def finished_seqs(db):
    return [r["seq"] for r in rows(db) if r["type"] == "run.finished"]


def run_cli(*args):
    """bs-controlplane in this process (the console script's own main), to save interpreter start-ups."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue()


def verify(cp, *extra):
    return run_cli("audit", "verify", "--data", cp.data_dir, *extra)


def test_the_untouched_log_verifies_with_both_checkpoint_keys(copy, pristine):
    result = copy.cli("audit", "verify", "--data", copy.data_dir, "--keys", pristine[1], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit chain OK" in result.stdout and "2 signed checkpoints hold" in result.stdout, result.stdout


def test_an_edited_row_is_named(copy):
    attack(copy, "UPDATE audit SET data=json_set(data, '$.ttl', 99999) WHERE seq=3")
    code, out = verify(copy)
    assert code == 1 and "BROKEN at seq 3: hash does not match" in out, out


def test_a_deleted_row_is_named(copy):
    attack(copy, "DELETE FROM audit WHERE seq=5")
    code, out = verify(copy)
    assert code == 1 and "BROKEN at seq 6: expected seq 5" in out, out


def test_reordered_rows_are_named(copy):
    attack(copy, "UPDATE audit SET seq=-4 WHERE seq=4", "UPDATE audit SET seq=4 WHERE seq=5",
           "UPDATE audit SET seq=5 WHERE seq=-4")
    code, out = verify(copy)
    assert code == 1 and "BROKEN at seq 4: prev_hash does not match" in out, out


def test_a_rewritten_tail_with_a_recomputed_chain_is_caught_by_the_checkpoint(copy):
    db = attack(copy)
    first_finished = finished_seqs(db)[0]
    target = first_finished - 1  # the task.completed before the first run.finished
    db.execute("UPDATE audit SET data=json_set(data, '$.files', 0) WHERE seq=?", (target,))
    recompute_from(db, target)
    code, out = verify(copy)
    assert "BROKEN" not in out, out  # the chain itself is consistent again
    assert code == 1 and "checkpoint at seq %d" % first_finished in out and "no longer matches" in out, out


def test_removing_the_checkpoints_too_is_caught(copy):
    db = attack(copy)
    last = finished_seqs(db)[-1]
    db.execute("UPDATE audit SET subject='forged' WHERE seq=?", (last - 1,))
    recompute_from(db, last - 1)
    db.execute("DELETE FROM audit_checkpoints")
    db.commit()
    code, out = verify(copy)
    assert code == 1 and "checkpoint MISSING at seq %d" % last in out, out


def test_a_checkpoint_signed_with_the_attackers_key_is_caught(copy, pristine):
    db = attack(copy)
    last = finished_seqs(db)[-1]
    db.execute("UPDATE audit SET subject='forged' WHERE seq=?", (last - 1,))
    recompute_from(db, last - 1)
    head = rows(db)[-1]
    key = ed25519.Ed25519PrivateKey.generate()
    forged = {"seq": last, "hash": head["hash"], "time": head["time"], "kid": "ck-attacker"}
    forged["signature"] = base64.b64encode(key.sign(signed_payload(forged))).decode()
    db.execute("DELETE FROM audit_checkpoints WHERE seq=?", (last,))
    db.execute("INSERT INTO audit_checkpoints (seq, hash, time, kid, signature) VALUES (?, ?, ?, ?, ?)",
               (last, forged["hash"], forged["time"], forged["kid"], forged["signature"]))
    db.commit()
    code, out = verify(copy)
    assert code == 1 and "checkpoint at seq %d (key ck-attacker) no longer matches" % last in out, out
    # Planting the attacker's public key in the data dir does not help against a pinned copy.
    raw = key.public_key().public_bytes_raw()
    (copy.data_dir / "audit-keys" / "ck-attacker.json").write_text(json.dumps(
        {"kid": "ck-attacker", "alg": "Ed25519", "public_key": base64.b64encode(raw).decode(), "created": 0,
         "retired_at": None}))
    code, out = verify(copy, "--keys", pristine[1])
    assert code == 1 and "not a published checkpoint key" in out, out


def test_an_export_verifies_on_its_own_and_shows_its_own_tampering(copy, tmp_path):
    export = tmp_path / "audit.jsonl"
    assert run_cli("audit", "export", "--data", copy.data_dir, "--out", export)[0] == 0
    shutil.rmtree(copy.data_dir)  # the export alone
    code, out = run_cli("audit", "verify", "--file", export)
    assert code == 0 and "audit chain OK" in out, out

    lines = export.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    index = next(i for i, r in enumerate(records) if r.get("event", {}).get("seq") == 2)
    records[index]["event"]["actor"] = "mallory"
    export.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    code, out = run_cli("audit", "verify", "--file", export)
    assert code == 1 and "BROKEN at seq 2: hash does not match" in out, out

    prev = None
    for record in records:  # recompute the whole chain of the file: the checkpoints still disagree
        if "event" in record:
            event = record["event"]
            event["prev_hash"] = prev or "0" * 64
            event["hash"] = prev = row_hash(event["prev_hash"], event)
    export.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    code, out = run_cli("audit", "verify", "--file", export)
    assert code == 1 and "BROKEN" not in out and "checkpoint at seq" in out and "no longer matches" in out, out


def test_insert_or_replace_cannot_rewrite_or_drop_rows_while_the_triggers_stand(copy):
    """REPLACE deletes a conflicting row without firing DELETE triggers; the INSERT trigger refuses it."""
    db = sqlite3.connect(str(copy.db_path))
    db.row_factory = sqlite3.Row
    head = dict(db.execute("SELECT * FROM audit ORDER BY seq DESC LIMIT 1").fetchone())
    third = dict(db.execute("SELECT * FROM audit WHERE seq=3").fetchone())
    columns = ", ".join(third)
    marks = ", ".join("?" for dummy in third)
    rewritten = dict(third, actor="legit")
    # the next seq and the head's hash, but another row's id: REPLACE would delete that row
    stealing = dict(third, seq=head["seq"] + 1, prev_hash=head["hash"])
    for row in (rewritten, stealing):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("INSERT OR REPLACE INTO audit (%s) VALUES (%s)" % (columns, marks), list(row.values()))
    assert dict(db.execute("SELECT * FROM audit WHERE seq=3").fetchone()) == third
    assert db.execute("SELECT MAX(seq) FROM audit").fetchone()[0] == head["seq"]
    checkpoint = dict(db.execute("SELECT * FROM audit_checkpoints ORDER BY seq LIMIT 1").fetchone())
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("INSERT OR REPLACE INTO audit_checkpoints (seq, hash, time, kid, signature) VALUES (?, ?, ?, ?, ?)",
                   (checkpoint["seq"], "0" * 64, checkpoint["time"], checkpoint["kid"], checkpoint["signature"]))
    code, out = verify(copy)
    assert code == 0, out


def test_dropped_append_only_triggers_are_reported(copy):
    """Rows after the last checkpoint are guarded by the triggers alone; verify says when they are gone."""
    attack(copy, "DROP TRIGGER audit_append_only")
    code, out = verify(copy)
    assert code == 1 and "append-only triggers MISSING (audit_no_update, audit_no_delete, audit_append_only)" in out, out
