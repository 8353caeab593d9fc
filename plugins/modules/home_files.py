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
    module runs as root. Profiles are data; nothing in them is run, templated or evaluated.
  - Posts one C(file.written) or C(file.unchanged) event per entry and one C(task.completed), all
    in one request, before reporting success. Events of credential files carry the credential's
    name and the mode, never a digest of the secret.
author:
  - Bootstrap SaaS maintainers
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
      - Each entry has C(path), C(mode), C(sha256) (null for a credential) and C(credential).
    type: list
    elements: dict
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
    changed: {description: "Whether the file was (or, in check mode, would be) written.", type: bool}
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

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_module import (
    Failure, run_agent_module)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_state import (
    RUN, AgentState, display_path)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._allowlist import (
    PathRefused, describe_allowlist, file_mode, profile_path_parts)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import (
    AuditClient, AuditUndelivered, make_event)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._safe_write import WriteRefused

TASK = "home_files"
HIDDEN = "<credential %s: content hidden>\n"
MAX_DIFF_BYTES = 64 * 1024


class Refusal(object):
    def __init__(self, path, rule, message):
        self.path = path
        self.rule = rule
        self.message = message

    def __str__(self):
        return "%s (%s): %s" % (self.path, self.rule, self.message)


class Entry(object):
    """One validated profile entry."""

    def __init__(self, path, parts, mode, content=None, credential=None, sha256=None):
        self.path = path
        self.parts = parts
        self.mode = mode
        self.content = content          # bytes, or None when unknown (check mode)
        self.credential = credential
        self.sha256 = sha256 if content is None else hashlib.sha256(content).hexdigest()
        self.before = None              # (bytes, mode) or None, filled by inspect()


def shown(path):
    if isinstance(path, str) and all(" " <= c <= "~" for c in path):
        text = path
    else:
        text = ascii(path) if not isinstance(path, str) else ascii(path)[1:-1]
    return text if len(text) <= 160 else text[:160] + "..."


def validate(raw_entries, credentials, from_manifest, check_mode):
    """(entries, refusals): every entry is checked before anything is written."""
    entries, refusals, seen = [], [], set()
    for index, raw in enumerate(raw_entries):
        if not isinstance(raw, dict):
            refusals.append(Refusal("entry %d" % (index + 1), "not-a-mapping", "a profile entry must be a mapping"))
            continue
        path = raw.get("path")
        try:
            parts = profile_path_parts(path)
            mode = file_mode(raw.get("mode"), parts)
        except PathRefused as e:
            refusals.append(Refusal(shown(path), e.rule, "%s; allowed: %s" % (e.message, e.allowed)))
            continue
        path = "~/" + "/".join(parts)
        if path in seen:
            refusals.append(Refusal(path, "duplicate-path", "the profile lists this path more than once"))
            continue
        seen.add(path)
        credential = raw.get("credential")
        if from_manifest:
            digest = raw.get("sha256")
            if bool(credential) == bool(digest):
                refusals.append(Refusal(path, "content-source", "a manifest entry has either sha256 or credential"))
                continue
            content = None
            if credential and str(credential) in credentials:
                content = credentials[str(credential)]
            entries.append(Entry(path, parts, mode, content=content, credential=credential, sha256=digest))
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
                    entries.append(Entry(path, parts, mode, credential=credential))
                    continue
                refusals.append(Refusal(path, "credential-missing", "credential %r was not given in the credentials "
                                        "option (decrypt it on the controller with the credential lookup)" % credential))
                continue
            entries.append(Entry(path, parts, mode, content=credentials[credential], credential=credential))
            continue
        try:
            if not isinstance(encoded, str):
                raise TypeError
            content = base64.b64decode(encoded.encode("ascii"), validate=True)
        except (TypeError, ValueError, binascii.Error, UnicodeEncodeError):
            refusals.append(Refusal(path, "content-base64", "content_base64 is not valid base64"))
            continue
        entries.append(Entry(path, parts, mode, content=content))
    return entries, refusals


def inspect(writer, entries):
    """Read every destination's current state; refusals (symlinks, non-files) before any write."""
    refusals = []
    for entry in entries:
        try:
            entry.before = writer.file_state(entry.parts)
        except WriteRefused as e:
            refusals.append(Refusal(entry.path, e.rule, e.message))
    return refusals


def would_change(entry):
    if entry.before is None or entry.before[1] != entry.mode:
        return True
    if entry.content is not None:
        return entry.before[0] != entry.content
    if entry.sha256:
        return hashlib.sha256(entry.before[0]).hexdigest() != entry.sha256
    return True  # a credential whose plaintext is not known here


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
    before = entry.before[0] if entry.before else None
    if entry.content is None and not entry.credential:
        after = "<content with sha256 %s>\n" % entry.sha256
    else:
        after = diff_text(entry, entry.content if entry.content is not None else b"")
    before_text = diff_text(entry, before)
    if entry.before and entry.before[1] != entry.mode:
        before_text = "# mode %04o\n%s" % (entry.before[1], before_text)
        after = "# mode %04o\n%s" % (entry.mode, after)
    return {"before_header": dest, "after_header": dest, "before": before_text, "after": after}


def event_data(entry, owner):
    data = {"mode": "%04o" % entry.mode, "owner": owner}
    if entry.credential:
        data["credential"] = entry.credential  # a digest of a low-entropy secret would leak it
    else:
        data["sha256"] = entry.sha256
    return data


def refusal_message(refusals, written=False):
    lines = "; ".join(str(r) for r in refusals)
    head = "%d profile entr%s refused" % (len(refusals), "y" if len(refusals) == 1 else "ies")
    tail = "" if written else ", nothing was written"
    return "%s%s: %s. Allowed paths: %s" % (head, tail, lines, describe_allowlist())


def refused_result(refusals):
    return [{"path": r.path, "rule": r.rule, "message": r.message} for r in refusals]


def provision(module, writer, account):
    p = module.params
    state = AgentState(writer)
    run = state.run()
    profile = state.profile()
    owner = account.pw_name
    credentials = dict((str(k), v if isinstance(v, bytes) else str(v).encode("utf-8"))
                       for k, v in (p["credentials"] or {}).items())

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

    entries, refusals = validate(raw_entries, credentials, from_manifest, module.check_mode)
    refusals.extend(inspect(writer, entries))
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
    files, diffs, events = [], [], []
    for entry in entries:
        dest = os.path.join(home, *entry.parts)
        if module.check_mode:
            changed = would_change(entry)
        else:
            try:
                changed = writer.write(entry.parts, entry.content, entry.mode)
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
                raise Failure(msg, changed=any(f["changed"] for f in files), refused=refused_result([refusal]),
                              files=files)
            events.append(make_event(run["run_id"], TASK, "file.written" if changed else "file.unchanged",
                                     entry.path, event_data(entry, owner)))
        if changed and module._diff:
            diffs.append(diff_of(entry, dest))
        files.append({"path": entry.path, "dest": dest, "mode": "%04o" % entry.mode, "owner": owner,
                      "changed": changed})

    result = {"changed": any(f["changed"] for f in files), "files": files}
    if module._diff:
        result["diff"] = diffs
    if module.check_mode:
        return result

    record = state.files()
    paths = sorted(set(record.get("paths") or []) | set(e.path for e in entries))
    state.save_files({"paths": paths})
    events.append(make_event(run["run_id"], TASK, "task.completed", run.get("profile_name"),
                             {"profile_version": run.get("profile_version"), "files": len(entries)}))
    try:
        result["receipts"] = audit.deliver(events)
    except AuditUndelivered as e:
        raise Failure("the files were written but %s" % e, changed=result["changed"], files=files, spooled=e.spooled)
    return result


# The account options (user, allow_system_user, timeout) come from _agent_module.ACCOUNT_OPTIONS.
OPTIONS = dict(
    credentials=dict(type="dict", default={}, no_log=True),
    manifest=dict(type="list", elements="dict"),
)


def main():
    run_agent_module(OPTIONS, provision)


if __name__ == "__main__":
    main()
