#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: home_files
short_description: Write the redeemed profile's files into the user's home
version_added: 0.1.0
description:
  - Writes the files of the profile that P(bootstrap_saas.provisioning.token_redeem#module) kept on
    the host (C(~/.config/bootstrap-saas/profile.json)) into the home of O(user).
  - Only allowlisted paths are written, that is files strictly below C(~/.config/), C(~/.ssh/) and
    C(~/.local/bin/), and exactly C(~/.zshrc) and C(~/.bashrc). C(~/.config/bootstrap-saas/) (the
    agent's own state), absolute paths and everything else are refused, as are unsafe modes.
  - Every entry is checked first; if any entry is refused, nothing is written, a C(file.denied)
    audit event is posted for each refused entry, and the task fails naming each path and rule.
  - Files are written atomically without following symlinks, with the user's identity when the
    module runs as root. Profiles are data; nothing in them is run, templated or evaluated, and an
    entry with any key but C(path), C(mode), C(content_base64), C(credential), C(state),
    C(manage), C(backup) and C(replace_symlink) is refused.
  - C(~/.ssh/authorized_keys) is merged by default (C(manage=merge)) - the profile's key lines are
    added and the lines that the agent added and the profile no longer has are removed; lines that
    were there before (the key Ansible connects with, the user's own) are always kept. C(manage=file)
    replaces the whole file.
  - C(manage=block) manages one marked block inside the user's own file (an rc file, for example)
    and keeps every line outside it.
  - C(state=absent) removes the file (or the agent's block or keys in it). Files that the agent
    wrote for an earlier profile and that this profile no longer lists are removed too, unless
    they were changed since (they are then kept, with a warning); the agent keeps its record in
    C(~/.config/bootstrap-saas/files.json).
  - A symlink at a destination (stow-style dotfiles) is refused, naming the link, unless the entry
    sets C(replace_symlink=true), which replaces the link itself with the file. A symlink on the
    way to a destination is always refused.
  - C(backup=true) on an entry copies the file it replaces or removes to
    C(~/.config/bootstrap-saas/backups/TIMESTAMP/) first.
  - Posts one C(file.written) or C(file.unchanged) event per entry and one C(task.completed), all
    in one request, before reporting success. Events of credential files carry the credential's
    name and the mode, never a digest of the secret.
author:
  - Bootstrap SaaS maintainers (!UNKNOWN)
extends_documentation_fragment:
  - bootstrap_saas.provisioning.connection.run
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Writes nothing and posts nothing; reports which paths would change.
      - Compares the redeemed profile if there is one, else O(manifest).
      - A credential file whose plaintext is not given counts as changing.
  diff_mode:
    support: full
    details: Credential files are shown as hidden; binary files by size and digest.
  platform:
    platforms: posix
options:
  credentials:
    description:
      - Plaintext of the profile's credentials by name, as decrypted on the controller by the
        P(bootstrap_saas.provisioning.credential#lookup) lookup. Never logged or returned.
      - Every credential that the profile uses must be present (except in check mode).
    type: dict
    default: {}
  manifest:
    description:
      - The manifest that P(bootstrap_saas.provisioning.token_verify#module) returned, used only in
        check mode when no token has been redeemed on the host yet.
      - Each entry has C(path), C(mode), C(sha256) (null for a credential) and C(credential), and
        C(state), C(manage), C(backup) and C(replace_symlink) where the profile sets them.
    type: list
    elements: dict
  allowed:
    description:
      - Narrows the allowlist for this task, for example V(["~/.ssh/", "~/.zshrc"]); a trailing
        C(/) means everything below that directory.
      - Every item must lie within the fixed allowlist; this option cannot widen it.
      - When omitted, the whole fixed allowlist applies.
    type: list
    elements: str
seealso:
  - module: bootstrap_saas.provisioning.token_redeem
  - module: bootstrap_saas.provisioning.audit_event
"""

EXAMPLES = r"""
- name: Write the profile
  bootstrap_saas.provisioning.home_files:
    user: alice
    credentials:
      ssh_key: "{{ lookup('bootstrap_saas.provisioning.credential', 'ssh_key', envelopes=redeemed.credentials) }}"

- name: Write only the ssh files of the profile
  bootstrap_saas.provisioning.home_files:
    user: alice
    allowed: ["~/.ssh/"]
    credentials: "{{ credentials }}"

- name: Preview a profile that is not redeemed yet (check mode)
  bootstrap_saas.provisioning.home_files:
    user: alice
    manifest: "{{ verified.manifest }}"
  check_mode: true
  diff: true
"""

RETURN = r"""
files:
  description: One entry per profile file, in profile order.
  returned: success
  type: list
  elements: dict
  contains:
    path: {description: The profile path (C(~/...)), type: str, sample: "~/.zshrc"}
    dest: {description: The absolute path written, type: str, sample: /home/alice/.zshrc}
    mode: {description: The file's mode, type: str, sample: "0644"}
    owner: {description: The file's owner, type: str, sample: alice}
    changed: {description: "Whether the file was (or, in check mode, would be) written or removed.", type: bool}
    state: {description: V(absent) for an entry that removes, type: str, returned: for absent entries}
    manage: {description: V(block) or V(merge), type: str, returned: when not a whole file}
    backup: {description: The copy made before the change (C(~/...)), type: str, returned: when a backup was made}
removed:
  description: Files of an earlier profile that this one no longer lists, removed or (with C(kept)) left alone.
  returned: success
  type: list
  elements: dict
  contains:
    path: {description: The profile path, type: str, sample: "~/.config/old.conf"}
    dest: {description: The absolute path, type: str}
    changed: {description: Whether it was (or would be) removed, type: bool}
    kept: {description: Why it was left in place, type: str, returned: when kept}
receipts:
  description: The control plane's receipts for the posted events (file events, then the task event).
  returned: success, not in check mode
  type: list
  elements: dict
  contains:
    id: {description: Event id, type: str}
    seq: {description: Sequence number in the audit trail, type: int}
    hash: {description: Chain hash of the event, type: str}
    duplicate: {description: True when the event had been recorded before, type: bool}
refused:
  description: The refused entries (path, rule, message), when the task fails because of them.
  returned: failure
  type: list
  elements: dict
"""

import base64
import binascii
import hashlib
import os
import time

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_module import (
    Failure, run_agent_module)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_state import (
    RUN, STATE_PARTS, AgentState, display_path)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._allowlist import (
    PathRefused, check_narrowing, describe_allowlist, file_mode, profile_path_parts)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import (
    AuditClient, AuditUndelivered, make_event)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._safe_write import WriteRefused

TASK = "home_files"
HIDDEN = "<credential %s: content hidden>\n"
MAX_DIFF_BYTES = 64 * 1024

# The profile schema, checked strictly: any other key is refused, so that no field can ask for a
# command, a hook, a handler or a template (there is no such field).
COMMON_KEYS = ("path", "mode", "credential", "state", "manage", "backup", "replace_symlink")
PROFILE_KEYS = frozenset(COMMON_KEYS + ("content_base64",))
MANIFEST_KEYS = frozenset(COMMON_KEYS + ("sha256",))
STATES = ("present", "absent")
MANAGE = ("file", "block", "merge")
AUTHORIZED_KEYS = (".ssh", "authorized_keys")
# Lines starting with these mark the block the agent manages inside a user's own file.
BLOCK_BEGIN = b"# BEGIN bootstrap-saas managed block"
BLOCK_END = b"# END bootstrap-saas managed block"
BACKUPS = STATE_PARTS + ("backups",)


class Refusal(object):
    def __init__(self, path, rule, message):
        self.path = path
        self.rule = rule
        self.message = message

    def __str__(self):
        return "%s (%s): %s" % (self.path, self.rule, self.message)


class Entry(object):
    """One validated profile entry, or (``dropped``) a file an earlier profile wrote."""

    def __init__(self, path, parts, state="present", manage="file", mode=None, content=None, credential=None,
                 sha256=None, backup=False, replace_symlink=False, dropped=None):
        self.path = path
        self.parts = parts
        self.state = state
        self.manage = manage
        self.mode = mode
        self.content = content          # bytes, or None when unknown (check mode) or absent
        self.credential = credential
        self.sha256 = sha256 if content is None else hashlib.sha256(content).hexdigest()
        self.backup = backup
        self.replace_symlink = replace_symlink
        self.dropped = dropped          # the files.json record of a file no longer in the profile
        self.previous = None            # the files.json record of this path from the last run
        self.before = None              # what existing() found, filled by inspect()
        self.after = None               # the bytes to write, None to remove or when unknown
        self.changed = False
        self.keys = None                # merge: the key lines the agent manages after this run
        self.kept = None                # why a dropped file is left in place


def shown(path):
    if isinstance(path, str) and all(" " <= c <= "~" for c in path):
        text = path
    else:
        text = ascii(path) if not isinstance(path, str) else ascii(path)[1:-1]
    return text if len(text) <= 160 else text[:160] + "..."


def _schema_problem(raw, keys):
    """Rule and message for the first problem of an entry's keys and option values, else None."""
    unknown = sorted(shown(k) for k in raw if k not in keys)
    if unknown:
        return "unknown-key", "unknown key(s) %s; an entry has only %s" % (", ".join(unknown), ", ".join(sorted(keys)))
    state = raw.get("state", "present")
    if state not in STATES:
        return "schema", "state must be 'present' or 'absent'"
    for flag in ("backup", "replace_symlink"):
        if not isinstance(raw.get(flag, False), bool):
            return "schema", "%s must be true or false" % flag
    manage = raw.get("manage")
    if manage is not None and manage not in MANAGE:
        return "schema", "manage must be one of %s" % ", ".join(MANAGE)
    return None


def _manage_problem(entry):
    if entry.manage == "merge" and entry.parts != AUTHORIZED_KEYS:
        return "merge is only for ~/.ssh/authorized_keys; use block for a marked block in another file"
    if entry.manage != "file" and entry.credential:
        return "a credential is written as a whole file (manage: file)"
    if entry.manage != "file" and entry.replace_symlink:
        return "replace_symlink needs manage: file (a block or a merge keeps the user's own file)"
    return None


def _text_problem(entry):
    """Block and merge content is text that must not contain the block markers."""
    if entry.manage == "file" or entry.content is None:
        return None
    try:
        entry.content.decode("utf-8")
    except UnicodeDecodeError:
        return "content-text", "content managed as a %s must be UTF-8 text" % entry.manage
    if any(_is_marker(line) for line in entry.content.splitlines()):
        return "block-marker", "content must not contain the managed-block marker lines"
    return None


def validate(raw_entries, credentials, from_manifest, check_mode, allowed=None):
    """(entries, refusals): every entry is checked before anything is written."""
    entries, refusals, seen = [], [], set()
    keys = MANIFEST_KEYS if from_manifest else PROFILE_KEYS
    for index, raw in enumerate(raw_entries):
        if not isinstance(raw, dict):
            refusals.append(Refusal("entry %d" % (index + 1), "not-a-mapping", "a profile entry must be a mapping"))
            continue
        path = raw.get("path")
        try:
            parts = profile_path_parts(path, allowed)
        except PathRefused as e:
            refusals.append(Refusal(shown(path), e.rule, "%s; allowed: %s" % (e.message, e.allowed)))
            continue
        path = "~/" + "/".join(parts)
        problem = _schema_problem(raw, keys)
        if problem:
            refusals.append(Refusal(path, problem[0], problem[1]))
            continue
        state = raw.get("state", "present")
        try:
            mode = file_mode(raw.get("mode"), parts) if state == "present" or raw.get("mode") is not None else None
        except PathRefused as e:
            refusals.append(Refusal(path, e.rule, "%s; allowed: %s" % (e.message, e.allowed)))
            continue
        if path in seen:
            refusals.append(Refusal(path, "duplicate-path", "the profile lists this path more than once"))
            continue
        seen.add(path)
        credential = raw.get("credential")
        entry = Entry(path, parts, state=state, mode=mode, credential=credential,
                      manage=raw.get("manage") or ("merge" if parts == AUTHORIZED_KEYS else "file"),
                      backup=raw.get("backup", False), replace_symlink=raw.get("replace_symlink", False))
        why = _manage_problem(entry)
        if why:
            refusals.append(Refusal(path, "manage", why))
            continue
        source = "sha256" if from_manifest else "content_base64"
        if state == "absent":
            if raw.get(source) is not None or credential is not None:
                refusals.append(Refusal(path, "content-source", "an entry with state absent has no content"))
                continue
            entries.append(entry)
            continue
        if from_manifest:
            digest = raw.get("sha256")
            if bool(credential) == bool(digest):
                refusals.append(Refusal(path, "content-source", "a manifest entry has either sha256 or credential"))
                continue
            entry.sha256 = digest
            if credential and str(credential) in credentials:
                entry.content = credentials[str(credential)]
                entry.sha256 = hashlib.sha256(entry.content).hexdigest()
            entries.append(entry)
            continue
        encoded = raw.get("content_base64")
        if (encoded is None) == (credential is None):
            refusals.append(Refusal(path, "content-source", "exactly one of content_base64 and credential is required"))
            continue
        if credential is not None:
            if not isinstance(credential, str) or not credential:
                refusals.append(Refusal(path, "credential-name", "credential must be a non-empty name"))
                continue
            if credential not in credentials:
                if check_mode:
                    entries.append(entry)
                    continue
                refusals.append(Refusal(path, "credential-missing", "credential %r was not given in the credentials "
                                        "option (decrypt it on the controller with the credential lookup)" % credential))
                continue
            entry.content = credentials[credential]
        else:
            try:
                if not isinstance(encoded, str):
                    raise TypeError
                entry.content = base64.b64decode(encoded.encode("ascii"), validate=True)
            except (TypeError, ValueError, binascii.Error, UnicodeEncodeError):
                refusals.append(Refusal(path, "content-base64", "content_base64 is not valid base64"))
                continue
        entry.sha256 = hashlib.sha256(entry.content).hexdigest()
        problem = _text_problem(entry)
        if problem:
            refusals.append(Refusal(path, problem[0], problem[1]))
            continue
        entries.append(entry)
    return entries, refusals


def dropped_entries(record, entries, allowed=None):
    """Entries for the files an earlier profile had the agent write that this profile no longer has."""
    listed = set(e.path for e in entries)
    out = []
    for path, info in sorted((record.get("entries") or {}).items()):
        if path in listed or not isinstance(info, dict) or info.get("manage") not in MANAGE:
            continue
        try:
            parts = profile_path_parts(path, allowed)
        except (PathRefused, ValueError):
            continue    # files.json lives in the user's home: nothing in it can point elsewhere
        out.append(Entry(path, parts, state="absent", manage=info["manage"], sha256=info.get("sha256"),
                         backup=info.get("backup") is True, dropped=info))
    return out


# planning: what each entry turns its file into -------------------------------------------------

def _is_marker(line):
    return line.strip().startswith((BLOCK_BEGIN, BLOCK_END))


def _block_span(lines):
    """(begin, end) line indexes of the managed block, None if there is none; ValueError if broken."""
    begins = [i for i, line in enumerate(lines) if line.strip().startswith(BLOCK_BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.strip().startswith(BLOCK_END)]
    if not begins and not ends:
        return None
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ValueError("the managed-block markers are broken (expected one BEGIN line followed by one END line)")
    return begins[0], ends[0]


def _lines(data):
    return data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n") if data else []


def _join(lines):
    return b"".join(line + b"\n" for line in lines)


def block_content(data):
    span = _block_span(_lines(data))
    return None if span is None else _join(_lines(data)[span[0] + 1:span[1]])


def with_block(data, block):
    """``data`` with the managed block set to ``block`` (None removes the block)."""
    lines = _lines(data)
    span = _block_span(lines)
    inner = [] if block is None else _lines(block)
    new = [] if block is None else [BLOCK_BEGIN] + inner + [BLOCK_END]
    if span is not None:
        lines[span[0]:span[1] + 1] = new
    else:
        lines.extend(new)
    return _join(lines)


def key_lines(data):
    return [line.strip() for line in _lines(data) if line.strip() and not line.strip().startswith(b"#")]


def merged_keys(data, keys, managed):
    """(new file content, managed key lines): the user's lines are kept, the agent's are updated."""
    lines = _lines(data)
    present = set(line.strip() for line in lines)
    drop = set(managed) - set(keys)
    kept = [line for line in lines if line.strip() not in drop]
    added = [k for k in keys if k not in present]
    now_managed = [k for k in keys if k in managed or k not in present]
    return _join(kept + added), now_managed


def plan(entry):
    """Fill entry.after and entry.changed; raise ValueError for a file it cannot manage."""
    kind = entry.before[0] if entry.before else None
    current = entry.before[1] if kind == "file" else b""
    mode_differs = kind != "file" or entry.before[2] != entry.mode
    managed = [k.encode("utf-8") for k in (entry.dropped or entry.previous or {}).get("keys") or []
               if isinstance(k, str)]
    if entry.state == "absent":
        if kind is None:
            return
        if entry.manage == "file":
            if entry.dropped is not None and (kind != "file" or hashlib.sha256(current).hexdigest() != entry.sha256):
                entry.kept = "changed since the agent wrote it"
                return
            entry.changed = True
            return
        if kind != "file":
            return
        if entry.manage == "block":
            entry.after = with_block(current, None)
        else:
            entry.after = merged_keys(current, [], managed)[0]
        entry.changed = entry.after != current
        entry.mode = entry.before[2]
        return
    if entry.content is None:   # check mode without the content: compare digests
        if entry.manage == "file":
            entry.changed = mode_differs or not entry.sha256 or hashlib.sha256(current).hexdigest() != entry.sha256
        elif entry.manage == "block":
            inner = block_content(current) if kind == "file" else None
            entry.changed = mode_differs or inner is None or entry.sha256 not in (
                hashlib.sha256(inner).hexdigest(), hashlib.sha256(inner[:-1]).hexdigest())
        else:
            previous = entry.previous or {}
            present = set(line.strip() for line in _lines(current))
            entry.changed = mode_differs or previous.get("sha256") != entry.sha256 or not all(
                k in present for k in managed)
        return
    if entry.manage == "file":
        entry.after = entry.content
    elif entry.manage == "block":
        block = entry.content if entry.content.endswith(b"\n") or not entry.content else entry.content + b"\n"
        entry.after = with_block(current, block)
    else:
        entry.after, entry.keys = merged_keys(current, key_lines(entry.content), managed)
    entry.changed = mode_differs or entry.after != current


def inspect(writer, entries, record, stamp):
    """Read every destination's current state and plan it; refusals before any write."""
    refusals = []
    for entry in entries:
        entry.previous = (record.get("entries") or {}).get(entry.path) if entry.dropped is None else None
        if not isinstance(entry.previous, dict):
            entry.previous = None
        try:
            entry.before = writer.existing(entry.parts, replace_symlink=entry.replace_symlink)
            plan(entry)
            if entry.backup and entry.changed and entry.before and entry.before[0] == "file":
                # The way to the backup is walked now too, so that a planted link there refuses
                # the profile before anything is written.
                writer.existing(BACKUPS + (stamp,) + entry.parts)
        except WriteRefused as e:
            if entry.dropped is not None:
                entry.kept = "%s (%s)" % (e.message, e.rule)
                continue
            message = e.message
            if e.rule == "symlink" and e.path == entry.path:
                message += ("; set replace_symlink: true on this entry to replace the link itself with a file "
                            "(a stow-style dotfile link, for example)")
            refusals.append(Refusal(entry.path, e.rule, message))
        except ValueError as e:
            if entry.dropped is not None:
                entry.kept = str(e)
                continue
            refusals.append(Refusal(entry.path, "block-marker", "%s: %s; fix the file by hand" % (entry.path, e)))
    return refusals


# output -----------------------------------------------------------------------------------------

def diff_text(entry, content):
    if content is None:
        return ""
    if entry.credential:
        return HIDDEN % entry.credential
    if len(content) > MAX_DIFF_BYTES:
        return "<%d bytes, sha256 %s>\n" % (len(content), hashlib.sha256(content).hexdigest())
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return "<binary, %d bytes, sha256 %s>\n" % (len(content), hashlib.sha256(content).hexdigest())


def diff_of(entry, dest):
    kind = entry.before[0] if entry.before else None
    if kind == "symlink":
        before_text = "<symlink to %s>\n" % shown(entry.before[1])
    else:
        before_text = diff_text(entry, entry.before[1] if kind == "file" else None)
    if entry.state == "absent" and entry.after is None:
        after = ""
    elif entry.after is None:
        after = HIDDEN % entry.credential if entry.credential else "<content with sha256 %s>\n" % entry.sha256
    else:
        after = diff_text(entry, entry.after)
    if kind == "file" and entry.mode is not None and entry.before[2] != entry.mode:
        before_text = "# mode %04o\n%s" % (entry.before[2], before_text)
        after = "# mode %04o\n%s" % (entry.mode, after)
    return {"before_header": dest, "after_header": dest, "before": before_text, "after": after}


def event_data(entry, owner, backup):
    if entry.dropped is not None:
        data = {"reason": "dropped from the profile"}
        if entry.kept:
            data["kept"] = entry.kept
    elif entry.state == "absent":
        data = {"state": "absent"}
    else:
        data = {"mode": "%04o" % entry.mode, "owner": owner}
        if entry.credential:
            data["credential"] = entry.credential  # a digest of a low-entropy secret would leak it
        else:
            data["sha256"] = entry.sha256
    if entry.manage != "file":
        data["manage"] = entry.manage
    if backup:
        data["backup"] = backup
    return data


def event_type(entry):
    if not entry.changed:
        return "file.unchanged"
    if entry.state == "absent" and entry.after is None:
        return "file.removed"
    return "file.written"


def file_result(entry, dest, owner, backup):
    item = {"path": entry.path, "dest": dest, "changed": entry.changed}
    if entry.state == "present":
        item.update(mode="%04o" % entry.mode, owner=owner)
    else:
        item["state"] = "absent"
    if entry.manage != "file":
        item["manage"] = entry.manage
    if entry.kept:
        item["kept"] = entry.kept
    if backup:
        item["backup"] = backup
    return item


def refusal_message(refusals, written=False):
    lines = "; ".join(str(r) for r in refusals)
    head = "%d profile entr%s refused" % (len(refusals), "y" if len(refusals) == 1 else "ies")
    tail = "" if written else ", nothing was written"
    return "%s%s: %s. Allowed paths: %s" % (head, tail, lines, describe_allowlist())


def refused_result(refusals):
    return [{"path": r.path, "rule": r.rule, "message": r.message} for r in refusals]


# writing ----------------------------------------------------------------------------------------

def apply(writer, entry, stamp):
    """Make the change planned for ``entry``; the backup's display path, if one was made."""
    backup = None
    if entry.backup and entry.before and entry.before[0] == "file":
        parts = BACKUPS + (stamp,) + entry.parts
        writer.write(parts, entry.before[1], 0o600)
        backup = "~/" + "/".join(parts)
    if entry.state == "absent" and entry.after is None:
        writer.remove(entry.parts, replace_symlink=entry.replace_symlink)
    else:
        writer.write(entry.parts, entry.after, entry.mode, replace_symlink=entry.replace_symlink)
    return backup


def record_of(entry):
    info = {"manage": entry.manage, "sha256": hashlib.sha256(entry.after).hexdigest()
            if entry.manage == "file" else entry.sha256}
    if entry.keys is not None:
        info["keys"] = [k.decode("utf-8") for k in entry.keys]
    if entry.backup:
        info["backup"] = True
    return info


def new_record(record, entries, dropped):
    """files.json after this run: every present entry, and the dropped files that were kept."""
    old = record.get("entries") or {}
    out = {}
    for entry in entries:
        if entry.state == "present":
            out[entry.path] = record_of(entry) if entry.after is not None else old.get(entry.path)
    for entry in dropped:
        if entry.kept and not entry.kept.startswith("changed since"):
            out[entry.path] = entry.dropped    # could not be looked at now: try again next time
    out = dict((k, v) for k, v in out.items() if isinstance(v, dict))
    return {"paths": sorted(out), "entries": out}


def provision(module, writer, account):
    p = module.params
    state = AgentState(writer)
    run = state.run()
    profile = state.profile()
    owner = account.pw_name
    credentials = dict((str(k), v if isinstance(v, bytes) else str(v).encode("utf-8"))
                       for k, v in (p["credentials"] or {}).items())
    allowed = p["allowed"]
    if allowed is not None:
        try:
            check_narrowing(allowed)
        except ValueError as e:
            raise Failure("allowed: %s" % e)

    if run and profile is not None:
        raw_entries, from_manifest = profile.get("files"), False
    elif module.check_mode and p["manifest"] is not None:
        raw_entries, from_manifest = p["manifest"], True
    else:
        raise Failure("no redeemed run for %s: %s is missing; run bootstrap_saas.provisioning.token_redeem first%s"
                      % (owner, display_path(RUN), " (or give manifest in check mode)" if module.check_mode else ""))
    if not isinstance(raw_entries, list):
        raise Failure("the stored profile has no list of files; redeem the token again")

    audit = None
    if not module.check_mode:
        if run.get("finished"):
            raise Failure("run %s already finished; redeem a new token to provision again" % run.get("run_id"))
        audit = AuditClient.for_run(run, state, p["timeout"])
        audit.deliver([])  # the spool first

    record = state.files()
    entries, refusals = validate(raw_entries, credentials, from_manifest, module.check_mode, allowed)
    dropped = dropped_entries(record, entries, allowed) if not refusals else []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    refusals.extend(inspect(writer, entries + dropped, record, stamp))
    if refusals:
        if audit is not None:
            events = [make_event(run["run_id"], TASK, "file.denied", r.path, {"rule": r.rule}) for r in refusals]
            events.append(make_event(run["run_id"], TASK, "task.failed", run.get("profile_name"),
                                     {"denied": len(refusals), "rules": sorted(set(r.rule for r in refusals))}))
            try:
                audit.deliver(events)
            except AuditUndelivered as e:
                raise Failure("%s; moreover %s" % (refusal_message(refusals), e), refused=refused_result(refusals))
        raise Failure(refusal_message(refusals), refused=refused_result(refusals))

    home = account.pw_dir
    files, removed, diffs, events = [], [], [], []
    # The directories are synced once, when the loop ends: before the record is saved and the events are sent.
    with writer.deferred_dir_sync():
        for entry in entries + dropped:
            dest = os.path.join(home, *entry.parts)
            backup = None
            if entry.changed and not module.check_mode:
                try:
                    backup = apply(writer, entry, stamp)
                except WriteRefused as e:
                    # Only a change made between the inspection and the write gets here.
                    refusal = Refusal(entry.path, e.rule, e.message)
                    events.append(make_event(run["run_id"], TASK, "file.denied", entry.path, {"rule": e.rule}))
                    events.append(make_event(run["run_id"], TASK, "task.failed", run.get("profile_name"),
                                             {"denied": 1, "rules": [e.rule]}))
                    msg = refusal_message([refusal], written=True) + " (the files before it were written)"
                    try:
                        audit.deliver(events)
                    except AuditUndelivered as e:
                        msg = "%s; moreover %s" % (msg, e)
                    raise Failure(msg, changed=any(f["changed"] for f in files + removed),
                                  refused=refused_result([refusal]), files=files)
            if not module.check_mode:
                events.append(make_event(run["run_id"], TASK, event_type(entry), entry.path,
                                         event_data(entry, owner, backup)))
            if entry.kept:
                module.warn("%s was dropped from the profile but is kept: %s" % (entry.path, entry.kept))
            if entry.changed and module._diff:
                diffs.append(diff_of(entry, dest))
            (files if entry.dropped is None else removed).append(file_result(entry, dest, owner, backup))

    result = {"changed": any(f["changed"] for f in files + removed), "files": files, "removed": removed}
    if module._diff:
        result["diff"] = diffs
    if module.check_mode:
        return result

    state.save_files(new_record(record, entries, dropped))
    events.append(make_event(run["run_id"], TASK, "task.completed", run.get("profile_name"),
                             {"profile_version": run.get("profile_version"), "files": len(entries),
                              "removed": sum(1 for e in dropped if e.changed)}))
    try:
        result["receipts"] = audit.deliver(events)
    except AuditUndelivered as e:
        raise Failure("the files were written but %s" % e, changed=result["changed"], files=files, spooled=e.spooled)
    return result


# The account options (user, allow_system_user, timeout) come from _agent_module.ACCOUNT_OPTIONS.
OPTIONS = dict(
    credentials=dict(type="dict", default={}, no_log=True),
    manifest=dict(type="list", elements="dict"),
    allowed=dict(type="list", elements="str"),
)


def main():
    run_agent_module(OPTIONS, provision)


if __name__ == "__main__":
    main()
