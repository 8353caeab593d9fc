"""Profile manifests: strict schema check, normalisation and the diff summary of profile.updated.

The path allowlist is deliberately NOT applied here: the collection enforces it on the host.
"""
import base64
import binascii
import hashlib
import re

from . import audit, store
from .errors import bad_request
from .tokens import check_name
from .util import now_iso

ENTRY_KEYS = {"path", "mode", "content", "content_base64", "credential", "state", "manage", "backup",
              "replace_symlink"}
SOURCES = ("content", "content_base64", "credential")
# How the collection writes an entry; kept in the stored profile and in the manifest.
OPTION_VALUES = {"state": ("present", "absent"), "manage": ("file", "block", "merge"),
                 "backup": (True, False), "replace_symlink": (True, False)}
MODE_RE = re.compile(r"^[0-7]{3,4}$")
DIFF_LIST_LIMIT = 100


def normalise(manifest):
    """Validate a manifest; return its files as {path, mode, content_base64 | credential}."""
    if not isinstance(manifest, dict):
        raise bad_request("a profile manifest is an object {files: [...]}")
    unknown = set(manifest) - {"files"}
    if unknown:
        raise bad_request(f"unknown manifest key(s): {', '.join(sorted(map(str, unknown)))}")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise bad_request("manifest.files must be a list")
    seen, out = set(), []
    for index, entry in enumerate(files):
        where = f"files[{index}]"
        if not isinstance(entry, dict):
            raise bad_request(f"{where} must be an object")
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise bad_request(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        path = entry.get("path")
        if not isinstance(path, str) or not path or "\x00" in path or len(path) > 4096:
            raise bad_request(f"{where}: path must be a non-empty string")
        if path in seen:
            raise bad_request(f"{where}: duplicate path {path!r}")
        seen.add(path)
        options = {}
        for key, values in OPTION_VALUES.items():
            if key in entry:
                if not any(entry[key] is v if isinstance(v, bool) else entry[key] == v for v in values):
                    shown = ", ".join(str(v).lower() if isinstance(v, bool) else v for v in values)
                    raise bad_request(f"{where} ({path}): {key} must be one of {shown}")
                options[key] = entry[key]
        absent = options.get("state") == "absent"
        mode = entry.get("mode")
        if isinstance(mode, int) and not isinstance(mode, bool):
            raise bad_request(f"{where} ({path}): mode must be a quoted octal string such as \"0644\", not the "
                              f"integer {mode} (YAML reads an unquoted 0{mode:o} as {mode}; write \"{mode:04o}\")")
        if not (absent and mode is None) and (not isinstance(mode, str) or not MODE_RE.match(mode)):
            raise bad_request(f"{where} ({path}): mode must be a quoted octal string such as \"0644\"")
        sources = [key for key in SOURCES if key in entry]
        if absent:
            if sources:
                raise bad_request(f"{where} ({path}): an entry with state absent has no content")
            item = {"path": path, **options}
            if mode is not None:
                item["mode"] = mode
            out.append(item)
            continue
        if len(sources) != 1:
            raise bad_request(f"{where} ({path}): exactly one of content, content_base64, credential is needed")
        source = sources[0]
        value = entry[source]
        if not isinstance(value, str):
            raise bad_request(f"{where} ({path}): {source} must be a string")
        item = {"path": path, "mode": mode, **options}
        if source == "content":
            item["content_base64"] = base64.b64encode(value.encode("utf-8")).decode("ascii")
        elif source == "content_base64":
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(f"{where} ({path}): content_base64 is not valid base64")
            item["content_base64"] = value
        else:
            check_name(f"{where} ({path}): credential", value)
            item["credential"] = value
        out.append(item)
    return out


def content_sha256(entry):
    if "content_base64" not in entry:
        return None
    return hashlib.sha256(base64.b64decode(entry["content_base64"])).hexdigest()


def manifest_of(files):
    """What validate answers: paths, modes and digests, never content."""
    return [dict({"path": f["path"], "mode": f.get("mode"), "sha256": content_sha256(f),
                  "credential": f.get("credential")}, **{k: f[k] for k in OPTION_VALUES if k in f})
            for f in files]


def diff(old_files, new_files):
    old = {f["path"]: f for f in old_files}
    new = {f["path"]: f for f in new_files}
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(p for p in set(old) & set(new) if old[p] != new[p])
    summary = {"added": len(added), "removed": len(removed), "changed": len(changed)}
    for key, paths in (("added_paths", added), ("removed_paths", removed), ("changed_paths", changed)):
        summary[key] = paths[:DIFF_LIST_LIMIT]
    return summary


def set_profile(conn, name, manifest, actor, client_address=None):
    check_name("profile", name)
    files = normalise(manifest)
    with store.Transaction(conn):
        current = store.latest_profile(conn, name)
        version = current["version"] + 1 if current else 1
        store.insert_profile(conn, name, version, files, now_iso())
        summary = diff(current["files"] if current else [], files)
        audit.append(conn, "profile.updated", actor,
                     {"user": actor, "profile": name, "version": version, "files": len(files), "diff": summary},
                     subject=name, client_address=client_address)
    return {"name": name, "version": version}
