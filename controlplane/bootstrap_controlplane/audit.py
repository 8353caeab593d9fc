"""The audit hash chain: append inside BEGIN IMMEDIATE (one chain for all writers), checkpoint, verify, export."""
import json
import uuid

from . import checkpoints, events, store
from .util import canonical_json, epoch_iso, now_iso, sha256_hex

GENESIS = "0" * 64
# The fields that a row's hash covers, besides prev_hash.
HASHED_FIELDS = ("seq", "id", "type", "time", "actor", "client_address", "run_id", "task", "subject", "data")
EXPORT_FORMAT = "bootstrap-saas-audit-export/1"


def row_hash(prev_hash, fields):
    return sha256_hex(prev_hash + canonical_json({k: fields[k] for k in HASHED_FIELDS}))


def append(conn, type_, actor, data, *, event_id=None, run_id=None, task=None, subject=None, client_address=None):
    """Append one event. The caller holds a BEGIN IMMEDIATE transaction, so the chain head cannot move.

    The event must match the schema (events.py); a run.finished event and every CHECKPOINT_EVERY-th
    event get a signed checkpoint, returned under "checkpoint".
    """
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
    events.check_event(dict(fields, prev_hash=prev_hash, hash=digest))
    conn.execute(
        "INSERT INTO audit (seq, id, type, time, actor, client_address, run_id, task, subject, data, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (fields["seq"], fields["id"], type_, fields["time"], actor, client_address, run_id, task, subject,
         canonical_json(data), prev_hash, digest),
    )
    result = {"id": fields["id"], "seq": fields["seq"], "hash": digest}
    if type_ == "run.finished" or fields["seq"] % checkpoints.CHECKPOINT_EVERY == 0:
        result["checkpoint"] = checkpoints.record(conn, fields["seq"], digest)
    return result


def record(conn, type_, actor, data, **kwargs):
    """Append in a transaction of its own."""
    with store.Transaction(conn):
        return append(conn, type_, actor, data, **kwargs)


def checkpoint_head(conn):
    """Sign the current head unless it is signed already; returns the head's checkpoint or None (empty log)."""
    with store.Transaction(conn):
        head = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        done = None
        if head is not None:
            done = next((c for c in checkpoints.stored(conn) if c["seq"] == head["seq"]), None)
            if done is None:
                done = checkpoints.record(conn, head["seq"], head["hash"])
    return done


def event_by_id(conn, event_id):
    return conn.execute("SELECT * FROM audit WHERE id=?", (event_id,)).fetchone()


def row_to_dict(row):
    event = {k: row[k] for k in row.keys()}
    event["data"] = json.loads(event["data"])
    return event


def list_events(conn, after=0, limit=None):
    query, args = "SELECT * FROM audit WHERE seq > ? ORDER BY seq", [after]
    if limit is not None:
        query += " LIMIT ?"
        args.append(limit)
    return [row_to_dict(r) for r in conn.execute(query, args)]


class Report:
    """What verify found: the first break of the chain, and every checkpoint that does not hold."""

    def __init__(self):
        self.count = 0          # events checked before the first break (all of them when intact)
        self.total = 0          # events read
        self.broken = None      # (seq, reason) of the first broken link
        self.checkpoints = 0    # checkpoints that hold
        self.problems = []      # (seq, message) for checkpoints
        self.head = None        # (seq, hash) of the last event read
        self.last_checkpoint = None

    @property
    def ok(self):
        return self.broken is None and not self.problems

    def lines(self):
        out = []
        if self.broken:
            out.append(f"audit chain BROKEN at seq {self.broken[0]}: {self.broken[1]} "
                       f"({self.count} events before it are intact)")
        for _, message in self.problems:
            out.append(message)
        if self.ok:
            last = f", the last at seq {self.last_checkpoint}" if self.checkpoints else ""
            out.append(f"audit chain OK: {self.count} events; {self.checkpoints} signed checkpoints hold{last}")
        return out


def verify_events(rows, stored_checkpoints, keys):
    """Recompute the chain over rows (stored events in seq order) and check the checkpoints.

    A checkpoint must verify with a published key and match the chain hash at its seq; every
    run.finished event and every CHECKPOINT_EVERY-th event must have one. So rewriting the rows and
    recomputing the chain still shows: the signed hash no longer matches, or a checkpoint is missing.
    """
    report = Report()
    keys = {k["kid"]: k for k in keys}
    by_seq = {c["seq"]: c for c in stored_checkpoints}
    prev_hash, expected_seq = GENESIS, 1
    for row in rows:
        report.total += 1
        seq = row["seq"]
        report.head = (seq, row["hash"])
        if report.broken is None:
            reason = _link_problem(row, prev_hash, expected_seq)
            if reason:
                report.broken = (seq, reason)
            else:
                report.count += 1
        needed = row["type"] == "run.finished" or (isinstance(seq, int) and seq % checkpoints.CHECKPOINT_EVERY == 0)
        checkpoint = by_seq.pop(seq, None)
        if checkpoint is not None:
            _check_checkpoint(report, checkpoint, row["hash"], keys)
        elif needed:
            why = "a run.finished event" if row["type"] == "run.finished" else \
                f"every {checkpoints.CHECKPOINT_EVERY}th event"
            report.problems.append((seq, f"checkpoint MISSING at seq {seq}: {why} has a signed checkpoint; "
                                         "it was removed"))
        prev_hash, expected_seq = row["hash"], (seq + 1 if isinstance(seq, int) else expected_seq + 1)
    for seq, checkpoint in sorted(by_seq.items()):
        report.problems.append((seq, f"checkpoint at seq {seq} (key {checkpoint['kid']}) no longer matches: "
                                     "the chain has no event there (events were removed)"))
    report.problems.sort(key=lambda p: p[0])
    report.last_checkpoint = max((c["seq"] for c in stored_checkpoints), default=None)
    return report


def _link_problem(row, prev_hash, expected_seq):
    if row["seq"] != expected_seq:
        return f"expected seq {expected_seq}"
    if row["prev_hash"] != prev_hash:
        return "prev_hash does not match the previous event's hash"
    try:
        fields = row_to_dict(row) if not isinstance(row["data"], dict) else row
    except ValueError:
        return "data is not valid JSON"
    if row_hash(prev_hash, fields) != row["hash"]:
        return "hash does not match the event's content"
    return None


def _check_checkpoint(report, checkpoint, chain_hash, keys):
    seq = checkpoint["seq"]
    problem = checkpoints.signature_problem(checkpoint, keys)
    if problem is None and checkpoint["hash"] != chain_hash:
        problem = f"the chain hash there is now {chain_hash[:16]}..., the signed one {checkpoint['hash'][:16]}..."
    if problem is None:
        key = keys[checkpoint["kid"]]
        # A retired key's private half is destroyed: nothing it signs can be dated after that.
        if key.get("retired_at") is not None and checkpoint["time"] > epoch_iso(key["retired_at"] + 1):
            problem = f"it is dated after key {key['kid']} was retired"
    if problem:
        report.problems.append((seq, f"checkpoint at seq {seq} (key {checkpoint['kid']}) no longer matches: {problem}"))
    else:
        report.checkpoints += 1


def verify(conn, keys=None):
    """Verify the database's chain and checkpoints, with the data dir's published keys unless keys are given."""
    if keys is None:
        keys = checkpoints.public_keys(checkpoints.data_dir_of(conn))
    rows = conn.execute("SELECT * FROM audit ORDER BY seq")
    report = verify_events(rows, checkpoints.stored(conn), keys)
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    missing = [name for name in store.AUDIT_TRIGGERS if name not in present]
    if missing:
        report.problems.insert(0, (0, "append-only triggers MISSING (%s): someone dropped them; the events "
                                      "after the last signed checkpoint cannot be trusted" % ", ".join(missing)))
    return report


def export_lines(conn):
    """The log as JSON lines: a header, the public checkpoint keys, the checkpoints, then every event."""
    keys = checkpoints.public_keys(checkpoints.data_dir_of(conn))
    stored = checkpoints.stored(conn)
    count = conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
    yield canonical_json({"export": {"format": EXPORT_FORMAT, "exported_at": now_iso(), "events": count,
                                     "checkpoints": len(stored)}})
    for key in keys:
        yield canonical_json({"key": key})
    for checkpoint in stored:
        yield canonical_json({"checkpoint": checkpoint})
    for row in conn.execute("SELECT * FROM audit ORDER BY seq"):
        yield canonical_json({"event": row_to_dict(row)})


class ExportError(ValueError):
    pass


def read_export(lines):
    """(events, checkpoints, keys) from an export; refuses anything that is not one."""
    found = {"event": [], "checkpoint": [], "key": []}
    header = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise ExportError(f"line {number} is not JSON")
        if not isinstance(record, dict) or len(record) != 1:
            raise ExportError(f"line {number} is not an export record")
        (kind, value), = record.items()
        if kind == "export":
            header = value
        elif kind in found and isinstance(value, dict):
            found[kind].append(value)
        else:
            raise ExportError(f"line {number}: unknown record {kind!r}")
    if not header or header.get("format") != EXPORT_FORMAT:
        raise ExportError(f"not an audit export (no {EXPORT_FORMAT} header)")
    for event in found["event"]:
        if not all(k in event for k in HASHED_FIELDS + ("prev_hash", "hash")):
            raise ExportError(f"an event lacks fields: {sorted(set(HASHED_FIELDS) - set(event))}")
    return found["event"], found["checkpoint"], found["key"]
