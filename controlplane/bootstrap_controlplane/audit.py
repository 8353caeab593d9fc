"""The audit hash chain: append inside BEGIN IMMEDIATE (one chain for all writers) and verify."""
import json
import uuid

from .util import canonical_json, now_iso, sha256_hex

GENESIS = "0" * 64
# The fields that a row's hash covers, besides prev_hash.
HASHED_FIELDS = ("seq", "id", "type", "time", "actor", "client_address", "run_id", "task", "subject", "data")


def row_hash(prev_hash, fields):
    return sha256_hex(prev_hash + canonical_json({k: fields[k] for k in HASHED_FIELDS}))


def append(conn, type_, actor, data, *, event_id=None, run_id=None, task=None, subject=None, client_address=None):
    """Append one event. The caller holds a BEGIN IMMEDIATE transaction, so the chain head cannot move."""
    assert conn.in_transaction, "audit appends run inside BEGIN IMMEDIATE"
    head = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    fields = {
        "seq": (head["seq"] + 1) if head else 1,
        "id": event_id or uuid.uuid4().hex,
        "type": type_,
        "time": now_iso(),
        "actor": actor,
        "client_address": client_address,
        "run_id": run_id,
        "task": task,
        "subject": subject,
        "data": data,
    }
    prev_hash = head["hash"] if head else GENESIS
    digest = row_hash(prev_hash, fields)
    conn.execute(
        "INSERT INTO audit (seq, id, type, time, actor, client_address, run_id, task, subject, data, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (fields["seq"], fields["id"], type_, fields["time"], actor, client_address, run_id, task, subject,
         canonical_json(data), prev_hash, digest),
    )
    return {"id": fields["id"], "seq": fields["seq"], "hash": digest}


def record(conn, type_, actor, data, **kwargs):
    """Append in a transaction of its own."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = append(conn, type_, actor, data, **kwargs)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def event_by_id(conn, event_id):
    return conn.execute("SELECT * FROM audit WHERE id=?", (event_id,)).fetchone()


def row_to_dict(row):
    event = {k: row[k] for k in row.keys()}
    event["data"] = json.loads(event["data"])
    return event


def list_events(conn):
    return [row_to_dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY seq")]


def verify(conn):
    """Recompute the chain. Returns (count, None) or (count_checked, (seq, reason)) at the first break."""
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for row in conn.execute("SELECT * FROM audit ORDER BY seq"):
        seq = row["seq"]
        if seq != expected_seq:
            return count, (seq, f"expected seq {expected_seq}")
        if row["prev_hash"] != prev_hash:
            return count, (seq, "prev_hash does not match the previous event's hash")
        try:
            fields = row_to_dict(row)
        except ValueError:
            return count, (seq, "data is not valid JSON")
        if row_hash(prev_hash, fields) != row["hash"]:
            return count, (seq, "hash does not match the event's content")
        prev_hash, expected_seq, count = row["hash"], seq + 1, count + 1
    return count, None
