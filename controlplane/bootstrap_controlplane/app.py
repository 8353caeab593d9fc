"""The WSGI application: docs/api.md's routes, no framework."""
import hmac
import json
import math
import re
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

from . import audit, enrollment, profiles, store, tokens
from .audit_routes import AuditRoutes
from .errors import ApiError, bad_request, not_found
from .events import SchemaError, check_data
from .keys import KeyRing
from .util import canonical_json, fingerprint, load_config

MAX_BODY = 1024 * 1024
MAX_EVENTS = 5000
AGENT_EVENT_TYPES = {"file.written", "file.unchanged", "file.removed", "file.denied",
                     "task.completed", "task.failed", "run.finished"}
EVENT_KEYS = {"id", "type", "run_id", "task", "subject", "data"}
EVENT_ID_RE = re.compile(r"^[0-9a-f]{32,64}$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
MACHINE_KEYS = {"id", "hostname", "user"}
MAX_EVENT_DATA = 64 * 1024


class RateLimiter:
    """A token bucket per client address: `rate` requests per second, bursts up to `burst`."""

    def __init__(self, rate, burst):
        self.rate = rate
        self.burst = max(burst, 1)
        self.buckets = {}
        self.lock = threading.Lock()

    def check(self, address):
        """Returns 0 when allowed, else the seconds to wait."""
        if self.rate <= 0:
            return 0
        now = time.monotonic()
        with self.lock:
            if len(self.buckets) > 10000:  # forget idle clients so the table stays bounded
                self.buckets = {a: b for a, b in self.buckets.items() if now - b[1] < 60}
            tokens_left, last = self.buckets.get(address, (self.burst, now))
            tokens_left = min(self.burst, tokens_left + (now - last) * self.rate)
            if tokens_left >= 1:
                self.buckets[address] = (tokens_left - 1, now)
                return 0
            self.buckets[address] = (tokens_left, now)
            return max(1, math.ceil((1 - tokens_left) / self.rate))


class ControlPlaneApp(AuditRoutes):
    def __init__(self, data_dir, rate_limit=None, test_redeem_delay=0.0):
        self.data_dir = Path(data_dir)
        # Test-only (serve --test-redeem-delay, hidden): widens the window between a redeem's read of
        # the token row and its write, which must not matter because the write is one conditional UPDATE.
        self.test_redeem_delay = test_redeem_delay
        self.config = load_config(data_dir)
        self.keyring = KeyRing(data_dir, self.config)
        self.pool = store.ConnectionPool(data_dir)
        self.admin_key = (self.data_dir / "admin.key").read_text().strip()
        if rate_limit is None:
            limits = self.config["rate_limit"]
            self.limiter = RateLimiter(limits["rate"], limits["burst"])
        else:
            self.limiter = RateLimiter(rate_limit, 2 * rate_limit)
        self.routes = [
            ("GET", re.compile(r"^/\.well-known/jwks\.json$"), self.jwks),
            ("POST", re.compile(r"^/v1/tokens$"), self.mint),
            ("POST", re.compile(r"^/v1/tokens/validate$"), self.validate),
            ("POST", re.compile(r"^/v1/tokens/redeem$"), self.redeem),
            ("POST", re.compile(r"^/v1/audit/events$"), self.post_events),
            ("GET", re.compile(r"^/v1/credentials/([^/]+)$"), self.get_credential),
            ("PUT", re.compile(r"^/v1/profiles/([^/]+)$"), self.put_profile),
            ("GET", re.compile(r"^/v1/audit/events$"), self.list_audit_events),
            ("GET", re.compile(r"^/v1/audit/checkpoints$"), self.list_checkpoints),
            ("GET", re.compile(r"^/v1/audit/checkpoint-keys$"), self.checkpoint_keys),
            ("GET", re.compile(r"^/v1/audit/schema$"), self.audit_schema),
        ]

    # --- WSGI plumbing ------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        started = time.monotonic()
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "")
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        try:
            wait = self.limiter.check(environ.get("REMOTE_ADDR", "?"))
            if wait:
                raise ApiError(429, "rate_limited", f"too many requests; retry in {wait} s",
                               [("Retry-After", str(wait))])
            status, body = self.dispatch(method, path, environ)
        except ApiError as exc:
            status, body = exc.status, {"error": {"code": exc.code, "message": exc.message}}
            headers += exc.headers
        except Exception:
            # The traceback names code lines only; request bodies and headers are never logged.
            sys.stderr.write(traceback.format_exc(limit=8))
            status, body = 500, {"error": {"code": "internal_error", "message": "internal error"}}
        self.admin_logout(environ, status)
        payload = json.dumps(body).encode("utf-8")
        headers.append(("Content-Length", str(len(payload))))
        start_response(f"{status} {STATUS_TEXT.get(status, 'Status')}", headers)
        # Path only (never the query string), status and duration: no bodies, headers or tokens.
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {environ.get('REMOTE_ADDR', '?')} {method} "
                         f"{_loggable(path)} {status} {1000 * (time.monotonic() - started):.1f}ms\n")
        sys.stderr.flush()
        return [payload]

    def dispatch(self, method, path, environ):
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match and route_method == method:
                return handler(environ, *match.groups())
        raise not_found(f"no route for {method} {_loggable(path)}")

    def body(self, environ):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise bad_request("bad Content-Length")
        if length > MAX_BODY:
            raise ApiError(413, "payload_too_large", f"the body is over {MAX_BODY} bytes")
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
            raise bad_request("the body is not valid JSON")
        if not isinstance(doc, dict):
            raise bad_request("the body must be a JSON object")
        return doc

    @staticmethod
    def bearer(environ):
        value = environ.get("HTTP_AUTHORIZATION", "")
        if not value.startswith("Bearer ") or not value[7:].strip():
            raise ApiError(401, "unauthorized", "an Authorization: Bearer header is needed")
        return value[7:].strip()

    def require_admin(self, environ):
        if not hmac.compare_digest(self.bearer(environ).encode(), self.admin_key.encode()):
            raise ApiError(401, "unauthorized", "bad admin key")
        self.admin_login(environ)

    def require_run(self, environ):
        """The run behind a run token; 410 once the run finished. The token is checked before the database."""
        claims, fp = tokens.verify(self.keyring, self.config, self.bearer(environ), tokens.RUN)
        run = store.run_row(self.pool.get(), claims["run"])
        # The run token is scoped to one run, one user and the profile it was redeemed for.
        if run is None or run["user"] != claims["sub"] or run["profile"] != claims["profile"]:
            raise ApiError(401, "unauthorized", f"unknown run (run token fingerprint {fp})")
        if run["finished_at"] is not None:
            raise ApiError(410, "gone", f"run {run['run_id']} is finished; its run token is revoked")
        return claims, run

    @staticmethod
    def only_keys(doc, allowed, required, where="body"):
        unknown = set(doc) - allowed
        if unknown:
            raise bad_request(f"unknown field(s) in {where}: {', '.join(sorted(unknown))}")
        missing = [k for k in required if k not in doc]
        if missing:
            raise bad_request(f"missing field(s) in {where}: {', '.join(missing)}")

    # --- routes -------------------------------------------------------------------------------

    def jwks(self, environ):
        return 200, self.keyring.jwks()

    def mint(self, environ):
        bearer = self.bearer(environ)
        if enrollment.is_enrollment_key(bearer):
            # Scoped to one profile and user: both may be left out, and must match when given.
            doc = self.body(environ)
            self.only_keys(doc, {"profile", "user", "ttl"}, [])
            return 201, enrollment.mint(self.pool.get(), self.keyring, self.config, bearer, doc,
                                        environ.get("REMOTE_ADDR"))
        self.require_admin(environ)
        doc = self.body(environ)
        self.only_keys(doc, {"profile", "user", "ttl"}, ["profile", "user"])
        answer = tokens.mint_provisioning(self.pool.get(), self.keyring, self.config, doc["profile"], doc["user"],
                                          doc.get("ttl"), "admin", environ.get("REMOTE_ADDR"))
        return 201, answer

    def _provisioning_token(self, environ, doc):
        """Verify first (no database), then find the token's row."""
        claims, fp = tokens.verify(self.keyring, self.config, doc.get("token"), tokens.PROVISION)
        conn = self.pool.get()
        row = store.token_row(conn, fp)
        if row is None:
            raise ApiError(401, "token_invalid", f"no such token was minted here (fingerprint {fp})")
        return claims, fp, conn, row

    def validate(self, environ):
        doc = self.body(environ)
        self.only_keys(doc, {"token"}, ["token"])
        claims, fp, conn, row = self._provisioning_token(environ, doc)
        status = "unused"
        if row["redeemed_at"] is not None:
            run = store.run_row(conn, row["run_id"])
            status = "finished" if run is not None and run["finished_at"] is not None else "redeemed"
        profile = store.profile_version(conn, row["profile"], row["profile_version"])
        audit.record(conn, "token.validated", "control-plane",
                     {"fingerprint": fp, "status": status, "profile": row["profile"], "user": row["user"]},
                     subject=fp, client_address=environ.get("REMOTE_ADDR"))
        return 200, {"valid": True, "fingerprint": fp, "profile": row["profile"],
                     "profile_version": row["profile_version"], "user": row["user"], "expires_at": row["exp"],
                     "status": status, "manifest": profiles.manifest_of(profile["files"])}

    def redeem(self, environ):
        doc = self.body(environ)
        self.only_keys(doc, {"token", "machine", "machine_secret_hash"}, ["token", "machine", "machine_secret_hash"])
        machine, secret_hash = doc["machine"], doc["machine_secret_hash"]
        if not isinstance(machine, dict):
            raise bad_request("machine must be an object {id, hostname, user}")
        self.only_keys(machine, MACHINE_KEYS, ["id", "hostname"], "machine")
        if not all(isinstance(v, str) and 0 < len(v) <= 256 for v in machine.values()):
            raise bad_request("machine.id, machine.hostname and machine.user are strings of 1 to 256 characters")
        if not isinstance(secret_hash, str) or not HEX64_RE.match(secret_hash):
            raise bad_request("machine_secret_hash must be 64 lower-case hex characters")
        claims, fp, conn, row = self._provisioning_token(environ, doc)
        client = environ.get("REMOTE_ADDR")
        profile = store.profile_version(conn, row["profile"], row["profile_version"])
        # Every credential the profile needs must exist for this user before anything is consumed.
        envelopes = {}
        for entry in profile["files"]:
            name = entry.get("credential")
            if name and name not in envelopes:
                cred = store.latest_credential(conn, row["user"], name)
                if cred is None:
                    raise not_found(f"profile {row['profile']} v{row['profile_version']} needs credential "
                                    f"{name!r}, which user {row['user']!r} does not have; nothing was consumed")
                envelopes[name] = cred["envelope"]
        if self.test_redeem_delay:
            time.sleep(self.test_redeem_delay)
        now = int(time.time())
        run_id = uuid.uuid4().hex
        repeat = False
        # Signed before the write transaction, so the database is not held for an RSA signature.
        fresh_run_token = tokens.mint_run_token(self.keyring, self.config, claims, run_id)
        with store.Transaction(conn):
            won = store.claim_token(conn, fp, now, now - self.config["leeway"], secret_hash, run_id)
            if won:
                store.insert_run(conn, {"run_id": run_id, "fingerprint": fp, "machine_secret_hash": secret_hash,
                                        "machine": json.dumps(machine), "user": row["user"],
                                        "profile": row["profile"], "profile_version": row["profile_version"],
                                        "client_address": client, "started_at": now})
            else:
                current = store.token_row(conn, fp)
                run = store.run_row(conn, current["run_id"]) if current["run_id"] else None
                same_machine = (current["machine_secret_hash"] is not None
                                and hmac.compare_digest(current["machine_secret_hash"], secret_hash))
                # The database checks expiry again: a repeat is honoured until exp or run.finished.
                expired = current["exp"] < now - self.config["leeway"]
                if run is not None and same_machine and run["finished_at"] is None and not expired:
                    run_id, repeat = run["run_id"], True
                else:
                    reason = ("token_expired" if expired else
                              "run_finished" if run is not None and same_machine else "already_redeemed")
                    audit.append(conn, "token.redeem_refused", machine["hostname"],
                                 {"fingerprint": fp, "reason": reason, "machine": machine,
                                  "client_address": client},
                                 subject=fp, client_address=client)
                    refusal = (reason, {"token_expired": "the token expired",
                                        "run_finished": "the run of this token is finished"}.get(
                        reason, "the token was already redeemed by another machine"))
                    run_id = None
            if run_id is not None:
                run_token, kid, run_exp = (fresh_run_token if not repeat else
                                           tokens.mint_run_token(self.keyring, self.config, claims, run_id))
                store.insert_run_token(conn, fingerprint(run_token), run_id, kid, run_exp)
                audit.append(conn, "run.started", machine["hostname"],
                             {"machine": machine, "fingerprint": fp, "client_address": client,
                              "profile": row["profile"], "profile_version": row["profile_version"],
                              "user": row["user"], "repeat": repeat},
                             run_id=run_id, subject=fp, client_address=client)
        if run_id is None:
            raise ApiError(401 if refusal[0] == "token_expired" else 409, refusal[0], f"{refusal[1]} (fingerprint {fp})")
        return 200, {"run_id": run_id, "run_token": run_token, "run_token_expires_at": run_exp, "repeat": repeat,
                     "profile": profile, "credentials": envelopes}

    def post_events(self, environ):
        try:
            claims, run = self.require_run(environ)
        except ApiError as gone:
            if gone.status != 410:
                raise
            return self.reacknowledge_finished(environ, self.pool.get(), gone)
        conn = self.pool.get()
        doc = self.body(environ)
        self.only_keys(doc, {"events"}, ["events"])
        events = doc["events"]
        if not isinstance(events, list) or not events or len(events) > MAX_EVENTS:
            raise bad_request(f"events must be a list of 1 to {MAX_EVENTS} events")
        checked = [self._checked_event(e, i) for i, e in enumerate(events)]
        allowed_runs = {run["run_id"]}
        for run_id in {e["run_id"] for e in checked} - allowed_runs:
            other = store.run_row(conn, run_id)
            # An earlier run of the same machine binding may still deliver its spooled events.
            if (other is None or other["user"] != run["user"] or other["started_at"] > run["started_at"]
                    or not hmac.compare_digest(other["machine_secret_hash"], run["machine_secret_hash"])):
                raise ApiError(403, "forbidden", f"run_id {run_id!r} is not this run's nor an earlier run "
                                                 "of the same machine")
        machine = json.loads(run["machine"])
        actor = f"{machine['id']}/{machine['hostname']}"
        client = environ.get("REMOTE_ADDR")
        results, finished, signed = [], set(), None
        with store.Transaction(conn):
            for event in checked:
                stored = audit.event_by_id(conn, event["id"])
                if stored is not None:
                    if _payload(audit.row_to_dict(stored)) != _payload(event):
                        raise ApiError(409, "duplicate_event_id",
                                       f"event id {event['id']} is already stored with another payload")
                    results.append({"id": event["id"], "seq": stored["seq"], "hash": stored["hash"],
                                    "duplicate": True})
                    continue
                appended = audit.append(conn, event["type"], actor, event["data"], event_id=event["id"],
                                        run_id=event["run_id"], task=event["task"], subject=event["subject"],
                                        client_address=client)
                appended["duplicate"] = False
                signed = appended.pop("checkpoint", signed)
                results.append(appended)
                if event["type"] == "run.finished":
                    finished.add(event["run_id"])
            for run_id in finished:
                store.finish_run(conn, run_id, int(time.time()))
        # The signed checkpoint made by this batch (at run.finished, or at an interval), as a receipt.
        return 200, dict({"events": results}, **({"checkpoint": signed} if signed else {}))

    def _checked_event(self, event, index):
        where = f"events[{index}]"
        if not isinstance(event, dict):
            raise bad_request(f"{where} must be an object")
        self.only_keys(event, EVENT_KEYS, ["id", "type", "run_id", "data"], where)
        if not isinstance(event["id"], str) or not EVENT_ID_RE.match(event["id"]):
            raise bad_request(f"{where}: id must be 32 to 64 lower-case hex characters")
        if event["type"] not in AGENT_EVENT_TYPES:
            raise bad_request(f"{where}: type must be one of {', '.join(sorted(AGENT_EVENT_TYPES))}")
        if not isinstance(event["run_id"], str) or not 0 < len(event["run_id"]) <= 128:
            raise bad_request(f"{where}: run_id must be a string")
        for key, limit in (("task", 128), ("subject", 4096)):
            if not isinstance(event.get(key, ""), str) or len(event.get(key, "")) > limit:
                raise bad_request(f"{where}: {key} must be a string of at most {limit} characters")
        if not isinstance(event["data"], dict) or len(canonical_json(event["data"])) > MAX_EVENT_DATA:
            raise bad_request(f"{where}: data must be a JSON object of at most {MAX_EVENT_DATA} bytes")
        try:
            check_data(event["type"], event["data"], f"{where}.data")
        except SchemaError as exc:
            raise bad_request(f"{exc} (the audit event schema, docs/api.md)")
        return {"id": event["id"], "type": event["type"], "run_id": event["run_id"],
                "task": event.get("task", ""), "subject": event.get("subject", ""), "data": event["data"]}

    def get_credential(self, environ, name):
        claims, run = self.require_run(environ)
        conn = self.pool.get()
        cred = store.latest_credential(conn, run["user"], name)
        if cred is None:
            if store.credential_exists_for_other_user(conn, run["user"], name):
                raise ApiError(403, "forbidden", f"credential {name!r} belongs to another user")
            raise not_found(f"user {run['user']!r} has no credential {name!r}")
        return 200, {"name": name, "envelope": cred["envelope"]}

    def put_profile(self, environ, name):
        self.require_admin(environ)
        doc = self.body(environ)
        return 200, profiles.set_profile(self.pool.get(), name, doc, "admin", environ.get("REMOTE_ADDR"))


def _payload(event):
    """What makes two events with one id the same event (time, actor and seq are the server's)."""
    return canonical_json({"type": event["type"], "run_id": event["run_id"], "task": event.get("task") or "",
                           "subject": event.get("subject") or "", "data": event["data"]})


def _loggable(path):
    # Paths carry no secrets in this API, but never let a pasted token into the log.
    path = path[:200]
    return "<path redacted>" if "eyJ" in path else path


STATUS_TEXT = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
               404: "Not Found", 409: "Conflict", 410: "Gone", 413: "Payload Too Large",
               429: "Too Many Requests", 500: "Internal Server Error"}
