# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one audit client: deterministic event ids, batched POST, bounded retry, durable spool.

An event that cannot be delivered is appended to the host's spool and the task fails closed;
the next call delivers the spool first. Ids are deterministic, so a retry (or a spooled event
that did reach the control plane after all) is acknowledged as a duplicate, never stored twice.

Spooled events keep their own run id. When the run they belong to has ended (its run token is
revoked by run.finished, or has expired), they wait for the host's next run token: the control plane
accepts an earlier run's events from a later run of the same machine binding.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import re
import time

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_state import (
    RUN, SPOOL, StateError, display_path)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient, ControlPlaneError, plain)

EVENTS_PATH = "/v1/audit/events"
EVENT_TYPES = ("file.written", "file.unchanged", "file.removed", "file.denied",
               "task.completed", "task.failed", "run.finished")
MAX_EVENTS_PER_REQUEST = 5000
# The control plane refuses bodies over 1 MiB; stay well below it.
MAX_BODY_BYTES = 900 * 1024
RETRY_DELAYS = (0.5, 1.0, 2.0)
RETRY_AFTER_CAP = 10.0
_HEX_RE = re.compile(r"[0-9a-f]{32,64}")


def event_id(run_id, task, type, subject):
    joined = "|".join(str(v) for v in (run_id, task, type, subject))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


def make_event(run_id, task, type, subject, data=None):
    if type not in EVENT_TYPES:
        raise ValueError("unknown audit event type %r" % (type,))
    return {"id": event_id(run_id, task, type, subject), "type": str(type), "run_id": str(run_id),
            "task": str(task), "subject": str(subject), "data": plain(data or {})}


def is_retryable(error):
    return error.status == 0 or error.status == 429 or 500 <= error.status <= 599


class RunFinished(StateError):
    """The spool just delivered the current run's run.finished: nothing more belongs to that run."""


class AuditUndelivered(Exception):
    """Events could not be delivered; they are in the spool (unless spooling failed too)."""

    def __init__(self, message, spooled, cause):
        self.spooled = spooled
        self.cause = cause
        super(AuditUndelivered, self).__init__(message)


def _chunks(events):
    chunk, size = [], 0
    for event in events:
        length = len(json.dumps(event, separators=(",", ":"))) + 1
        if chunk and (len(chunk) >= MAX_EVENTS_PER_REQUEST or size + length > MAX_BODY_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(event)
        size += length
    if chunk:
        yield chunk


def _conflicting_id(error, events):
    if error.status != 409 or error.code != "duplicate_event_id":
        return None
    ids = set(event["id"] for event in events)
    for candidate in _HEX_RE.findall(error.message):
        if candidate in ids:
            return candidate
    return None


def _receipts(answer, events):
    receipts = answer.get("events")
    if not isinstance(receipts, list) or len(receipts) != len(events):
        raise ControlPlaneError(200, "bad_response", "the control plane acknowledged %s of %d audit events"
                                % (len(receipts) if isinstance(receipts, list) else "none", len(events)))
    by_id = dict((r["id"], r) for r in receipts if isinstance(r, dict) and "id" in r)
    out = {}
    for event in events:
        receipt = by_id.get(event["id"])
        if receipt is None:
            raise ControlPlaneError(200, "bad_response", "the control plane did not acknowledge audit event %s"
                                    % event["id"])
        out[event["id"]] = {"id": receipt["id"], "seq": receipt.get("seq"), "hash": receipt.get("hash"),
                            "duplicate": bool(receipt.get("duplicate", False))}
    return out


def _unique(events):
    seen, out = set(), []
    for event in events:
        if event.get("id") not in seen:
            seen.add(event.get("id"))
            out.append(event)
    return out


class AuditClient:
    @classmethod
    def for_run(cls, run, state, timeout=30, **kwargs):
        """The audit client for the run recorded in run.json (its URL, CA and run token)."""
        missing = [key for key in ("url", "run_id", "run_token") if not run.get(key)]
        if missing:
            raise StateError("%s lacks %s; redeem the token again" % (display_path(RUN), ", ".join(missing)))
        client = ControlPlaneClient(run["url"], run.get("ca_pem"), timeout)
        return cls(client, run["run_token"], state, **kwargs)

    def __init__(self, client, run_token, state, delays=RETRY_DELAYS, retry_after_cap=RETRY_AFTER_CAP, sleep=time.sleep):
        self.client = client
        self.run_token = str(run_token)
        self.state = state
        self.delays = tuple(delays)
        self.retry_after_cap = float(retry_after_cap)
        self.sleep = sleep
        self.spool_receipts = []
        self.conflicts = []

    def deliver(self, events=()):
        """Deliver the spool, then ``events``; return the receipts of ``events`` in order.

        Raises AuditUndelivered after spooling whatever was not acknowledged, and RunFinished when
        the spool held the current run's run.finished and nothing was given to post (a caller that
        delivers the spool before its work must not work for a finished run).
        """
        events = [plain(e) for e in events]
        spooled = _unique(self.state.spool_read())
        if spooled:
            try:
                self.spool_receipts = self._post_all(spooled)
            except ControlPlaneError as e:
                if e.status == 410:
                    # Only run.finished revokes a run token: the run is over, on the control plane's word.
                    self._mark_finished(lambda run: run.get("run_token") == self.run_token)
                self._fail(events, e, pending=len(spooled))
            self.state.spool_clear()
            ended = set(e.get("run_id") for e in spooled if e.get("type") == "run.finished")
            if self._mark_finished(lambda run: run.get("run_id") in ended) and not events:
                raise RunFinished("run %s finished just now: its spooled run.finished event was delivered; "
                                  "redeem a new token to provision again" % ", ".join(sorted(ended)))
        if not events:
            return []
        try:
            return self._post_all(events)
        except ControlPlaneError as e:
            self._fail(events, e, pending=0)

    def _mark_finished(self, belongs):
        """Record the host's current run as finished if ``belongs(run)``; True when it is."""
        run = self.state.run()
        if not run or not belongs(run):
            return False
        if not run.get("finished"):
            run["finished"] = True
            self.state.save_run(run)
        return True

    def _post_all(self, events):
        receipts = []
        for chunk in _chunks(events):
            receipts.extend(self._post(chunk))
        return receipts

    def _post(self, events):
        """Receipts for ``events`` in order, retrying what may succeed later.

        An id stored with another payload (409 duplicate_event_id) is the same fact recorded with
        different details by an earlier call; it is left out, reported with ``conflict`` true, and
        the rest is posted again, so that one such event can never block the spool for good.
        """
        pending = list(events)
        receipts = {}
        while pending:
            try:
                answer = self._post_with_retry(pending)
            except ControlPlaneError as e:
                conflict = _conflicting_id(e, pending)
                if conflict is None:
                    raise
                receipts[conflict] = {"id": conflict, "seq": None, "hash": None, "duplicate": True, "conflict": True}
                self.conflicts.append(conflict)
                pending = [event for event in pending if event["id"] != conflict]
                continue
            receipts.update(_receipts(answer, pending))
            break
        return [receipts[event["id"]] for event in events]

    def _post_with_retry(self, events):
        attempt = 0
        while True:
            try:
                return self.client.post(EVENTS_PATH, {"events": events}, bearer=self.run_token)
            except ControlPlaneError as e:
                if not is_retryable(e) or attempt >= len(self.delays):
                    raise
                delay = self.delays[attempt]
                if e.status == 429 and e.retry_after is not None:
                    delay = max(delay, min(e.retry_after, self.retry_after_cap))
                attempt += 1
                self.sleep(delay)

    def _fail(self, events, error, pending):
        where = display_path(SPOOL)
        try:
            self.state.spool_append(events)
        except Exception as e:  # the spool itself failed: say so, the events are lost to this host
            raise AuditUndelivered("audit events could not be delivered (%s) and %d event(s) could not be spooled to %s: %s"
                                   % (error, len(events), where, e), 0, error)
        total = pending + len(events)
        when = ("by the next task of this collection on this host" if error.status != 410 else
                "under this host's next run token (this run is finished)")
        raise AuditUndelivered("audit events could not be delivered (%s); %d event(s) are spooled in %s and will be "
                               "delivered first %s" % (error, total, where, when), total, error)


def deliver_spool_first(state, timeout=30):
    """Deliver the host's spool with the recorded run's token, before a module starts its own work.

    A refused or revoked token (the recorded run has ended) leaves the spool for the next run
    token; an outage fails closed (AuditUndelivered), the spool kept.
    """
    run = state.run()
    if not state.spool_read() or not run or not run.get("url") or not run.get("run_token"):
        return
    try:
        AuditClient.for_run(run, state, timeout).deliver([])
    except RunFinished:
        pass
    except AuditUndelivered as e:
        if e.cause.status not in (401, 410):
            raise
