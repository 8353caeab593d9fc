# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's reserved state folder, ``~/.config/bootstrap-saas/`` (0700, files 0600).

Every access goes through a HomeWriter, so the folder is opened without following symlinks and,
when the module runs as root, with the target user's privileges.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import re
import secrets

STATE_PARTS = (".config", "bootstrap-saas")
STATE_DISPLAY = "~/" + "/".join(STATE_PARTS)
FILE_MODE = 0o600
DIR_MODE = 0o700

MACHINE_SECRET = "machine-secret"
RUN = "run.json"
PROFILE = "profile.json"
SPOOL = "spool.jsonl"
FILES = "files.json"

_SECRET_RE = re.compile(r"^[0-9a-f]{64}$")


class StateError(Exception):
    """A state file exists but cannot be used; the message names the file and what to do."""


def display_path(name):
    return "%s/%s" % (STATE_DISPLAY, name)


class AgentState:
    def __init__(self, writer):
        self.writer = writer
        self._dir_ready = False

    @staticmethod
    def parts(name):
        return STATE_PARTS + (name,)

    def _ensure_dir(self):
        if not self._dir_ready:
            # Only the state folder itself is forced to 0700; an existing ~/.config keeps its mode.
            self.writer.ensure_dir(STATE_PARTS, DIR_MODE)
            self._dir_ready = True

    def _read_text(self, name):
        data = self.writer.read(self.parts(name))
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise StateError("%s is not UTF-8 text; remove it to start over" % display_path(name))

    def _write(self, name, data):
        self._ensure_dir()
        return self.writer.write(self.parts(name), data, FILE_MODE)

    # machine secret -------------------------------------------------------------------------

    def machine_secret(self):
        """The host's secret (64 hex), created durably on first use and never replaced."""
        text = self._read_text(MACHINE_SECRET)
        if text is not None:
            secret = text.strip()
            if not _SECRET_RE.match(secret):
                # Replacing it would silently lose the binding of an earlier redeem.
                raise StateError("%s does not hold 64 hex characters; remove it only if no redeem is pending"
                                 % display_path(MACHINE_SECRET))
            return secret
        secret = secrets.token_hex(32)
        self._ensure_dir()
        # append_durable creates the file and fsyncs it (and its folder) before returning.
        self.writer.append_durable(self.parts(MACHINE_SECRET), (secret + "\n").encode("ascii"), FILE_MODE)
        return self.machine_secret()

    def machine_secret_hash(self):
        return hashlib.sha256(self.machine_secret().encode("ascii")).hexdigest()

    # run.json / profile.json / files.json ---------------------------------------------------

    def _load_json(self, name):
        text = self._read_text(name)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            raise StateError("%s is not valid JSON; remove it and redeem a new token" % display_path(name))
        if not isinstance(value, dict):
            raise StateError("%s does not hold a JSON object; remove it and redeem a new token" % display_path(name))
        return value

    def _save_json(self, name, value):
        return self._write(name, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8"))

    def run(self):
        return self._load_json(RUN)

    def save_run(self, run):
        return self._save_json(RUN, run)

    def profile(self):
        return self._load_json(PROFILE)

    def save_profile(self, profile):
        return self._save_json(PROFILE, profile)

    def files(self):
        record = self._load_json(FILES)
        return record if record is not None else {"paths": []}

    def save_files(self, record):
        if self._load_json(FILES) == record:
            return False
        return self._save_json(FILES, record)

    # audit spool ----------------------------------------------------------------------------

    def spool_append(self, events):
        if not events:
            return
        data = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in events)
        self._ensure_dir()
        self.writer.append_durable(self.parts(SPOOL), data.encode("utf-8"), FILE_MODE)

    def spool_read(self):
        """Spooled events in order. A line torn by a crash mid-append is skipped (it was never acked)."""
        text = self._read_text(SPOOL)
        if not text:
            return []
        events = []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def spool_clear(self):
        return self.writer.remove(self.parts(SPOOL))
