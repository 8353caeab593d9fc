"""The audit side of the API: admin sessions (auth.login / auth.logout), reading the log, checkpoints.

A mixin of ControlPlaneApp, kept apart so that the audit routes and their rules read in one place.
"""
import sys
import time
import traceback
import uuid
from urllib.parse import parse_qs

from . import audit, checkpoints, events, tokens
from .errors import bad_request

MAX_PAGE = 5000
SESSION = "bootstrap_saas.admin_session"


class AuditRoutes:
    def admin_login(self, environ):
        """An admin request is a session of its own: auth.login now, auth.logout when it is answered."""
        session = uuid.uuid4().hex
        route = f"{environ.get('REQUEST_METHOD', '')} {environ.get('PATH_INFO', '')}"[:300]
        audit.record(self.pool.get(), "auth.login", "admin",
                     {"provider": "admin-key", "session": session, "route": route,
                      "client_address": environ.get("REMOTE_ADDR")},
                     subject=session, client_address=environ.get("REMOTE_ADDR"))
        environ[SESSION] = (session, route, time.monotonic())

    def admin_logout(self, environ, status):
        if SESSION not in environ:
            return
        session, route, started = environ.pop(SESSION)
        try:
            audit.record(self.pool.get(), "auth.logout", "admin",
                         {"provider": "admin-key", "session": session, "route": route, "status": status,
                          "duration_ms": int(1000 * (time.monotonic() - started))},
                         subject=session, client_address=environ.get("REMOTE_ADDR"))
        except Exception:
            sys.stderr.write(traceback.format_exc(limit=8))

    def list_audit_events(self, environ):
        """GET /v1/audit/events?after=SEQ&limit=N (admin): stored events in seq order."""
        self.require_admin(environ)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        after, limit = _int_arg(query, "after", 0, 0, None), _int_arg(query, "limit", 1000, 1, MAX_PAGE)
        page = audit.list_events(self.pool.get(), after=after, limit=limit)
        return 200, {"events": page, "next_after": page[-1]["seq"] if len(page) == limit else None}

    def list_checkpoints(self, environ):
        """GET /v1/audit/checkpoints: public, so that anyone may keep copies of the signed heads."""
        return 200, {"checkpoints": checkpoints.stored(self.pool.get())}

    def checkpoint_keys(self, environ):
        """GET /v1/audit/checkpoint-keys: every checkpoint key ever used, retired ones included."""
        return 200, {"keys": checkpoints.public_keys(self.data_dir)}

    def audit_schema(self, environ):
        return 200, events.SCHEMA

    def reacknowledge_finished(self, environ, conn, gone):
        """A finished run's token still gets the receipt of the run.finished event that revoked it.

        Its answer may have been lost; anything but that exact event stays refused (410).
        """
        claims, _ = tokens.verify(self.keyring, self.config, self.bearer(environ), tokens.RUN)
        doc = self.body(environ)
        posted = doc.get("events") if isinstance(doc.get("events"), list) else []
        receipts = []
        for index, event in enumerate(posted[:MAX_PAGE]):
            checked = self._checked_event(event, index)
            stored = audit.event_by_id(conn, checked["id"])
            if (checked["type"] != "run.finished" or checked["run_id"] != claims["run"] or stored is None
                    or not _same(audit.row_to_dict(stored), checked)):
                raise gone
            receipts.append({"id": checked["id"], "seq": stored["seq"], "hash": stored["hash"], "duplicate": True})
        if not receipts:
            raise gone
        return 200, {"events": receipts}


def _same(stored, posted):
    keys = ("type", "run_id", "data")
    return all(stored[k] == posted[k] for k in keys) and (stored["task"] or "") == posted["task"] \
        and (stored["subject"] or "") == posted["subject"]


def _int_arg(query, name, default, low, high):
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise bad_request(f"{name} must be an integer")
    if value < low or (high is not None and value > high):
        raise bad_request(f"{name} must be between {low} and {high if high is not None else 'any'}")
    return value
