"""The audit event kinds and their fields, as one JSON Schema (draft 2020-12) that the server enforces.

`bs-controlplane audit schema` prints it and docs/audit-events.schema.json is that output. The server
checks every event before it is appended with the small validator below, which implements exactly the
keywords the schema uses (the standard library is enough, and the check stays fast for 5000 events).
"""
import re

HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"}
COUNT = {"type": "integer", "minimum": 0}
ADDRESS = {"type": ["string", "null"], "maxLength": 64}
HOME_PATHS = {"type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 4096}}

SERVER_TYPES = ("token.minted", "token.validated", "token.redeem_refused", "run.started", "profile.updated",
                "auth.login", "auth.logout", "token.mint_refused", "credential.stored", "enrollment_key.created",
                "enrollment_key.revoked")
AGENT_TYPES = ("file.written", "file.unchanged", "file.removed", "file.denied", "task.completed", "task.failed",
               "run.finished")


def _object(properties, required=()):
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_FILE = _object({
    "mode": {"type": "string", "pattern": "^[0-7]{4}$"},
    "owner": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"},
    # A digest for content from the profile; a credential is named, never digested (low entropy leaks).
    "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
    "credential": {"$ref": "#/$defs/name"},
    "state": {"enum": ["present", "absent"]},
    "manage": {"enum": ["file", "block", "merge"]},
    "backup": {"type": "string", "maxLength": 4096},
    "reason": {"type": "string", "maxLength": 256},
    "kept": {"type": "string", "maxLength": 1024},
})

DATA = {
    "token.minted": _object({
        "profile": {"$ref": "#/$defs/name"}, "profile_version": {"type": "integer", "minimum": 1},
        "user": {"$ref": "#/$defs/name"}, "ttl": {"type": "integer", "minimum": 1},
        "fingerprint": {"$ref": "#/$defs/hex64"}, "kid": {"type": "string", "maxLength": 64},
        "expires_at": {"type": "integer"},
    }, ["profile", "profile_version", "user", "ttl", "fingerprint", "kid", "expires_at"]),
    "token.validated": _object({
        "fingerprint": {"$ref": "#/$defs/hex64"}, "status": {"enum": ["unused", "redeemed", "finished"]},
        "profile": {"$ref": "#/$defs/name"}, "user": {"$ref": "#/$defs/name"},
    }, ["fingerprint", "status", "profile", "user"]),
    "token.redeem_refused": _object({
        "fingerprint": {"$ref": "#/$defs/hex64"}, "reason": {"type": "string", "pattern": "^[a-z_]{1,64}$"},
        "machine": {"$ref": "#/$defs/machine"}, "client_address": {"$ref": "#/$defs/address"},
    }, ["fingerprint", "reason", "machine", "client_address"]),
    "run.started": _object({
        "machine": {"$ref": "#/$defs/machine"}, "fingerprint": {"$ref": "#/$defs/hex64"},
        "client_address": {"$ref": "#/$defs/address"}, "profile": {"$ref": "#/$defs/name"},
        "profile_version": {"type": "integer", "minimum": 1}, "user": {"$ref": "#/$defs/name"},
        "repeat": {"type": "boolean"},
    }, ["machine", "fingerprint", "client_address", "profile", "profile_version", "user", "repeat"]),
    "profile.updated": _object({
        "user": {"type": "string", "minLength": 1, "maxLength": 128}, "profile": {"$ref": "#/$defs/name"},
        "version": {"type": "integer", "minimum": 1}, "files": COUNT,
        "diff": _object({"added": COUNT, "removed": COUNT, "changed": COUNT, "added_paths": HOME_PATHS,
                         "removed_paths": HOME_PATHS, "changed_paths": HOME_PATHS},
                        ["added", "removed", "changed", "added_paths", "removed_paths", "changed_paths"]),
    }, ["user", "profile", "version", "files", "diff"]),
    "auth.login": _object({
        "provider": {"enum": ["admin-key"]}, "session": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "route": {"type": "string", "maxLength": 300}, "client_address": {"$ref": "#/$defs/address"},
    }, ["provider", "session", "route", "client_address"]),
    "auth.logout": _object({
        "provider": {"enum": ["admin-key"]}, "session": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "route": {"type": "string", "maxLength": 300}, "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "duration_ms": {"type": "integer", "minimum": 0},
    }, ["provider", "session", "route", "status", "duration_ms"]),
    # Kinds of the credential vault and the enrollment keys: ids, names, versions and reasons, in the
    # summary shape (docs/api.md lists their fields).
    "token.mint_refused": {"$ref": "#/$defs/summary"},
    "credential.stored": {"$ref": "#/$defs/summary"},
    "enrollment_key.created": {"$ref": "#/$defs/summary"},
    "enrollment_key.revoked": {"$ref": "#/$defs/summary"},
    "file.written": {"$ref": "#/$defs/file"},
    "file.unchanged": {"$ref": "#/$defs/file"},
    "file.removed": {"$ref": "#/$defs/file"},
    "file.denied": _object({"rule": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,63}$"}}, ["rule"]),
    "task.completed": {"$ref": "#/$defs/summary"},
    "task.failed": {"$ref": "#/$defs/summary"},
    "run.finished": {"$ref": "#/$defs/summary"},
}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://bootstrap-saas.example/schemas/audit-event.json",
    "title": "A stored audit event of the bootstrap-saas control plane",
    "type": "object",
    "properties": {
        "seq": {"type": "integer", "minimum": 1},
        "id": {"type": "string", "pattern": "^[0-9a-f]{32,64}$"},
        "type": {"enum": list(SERVER_TYPES + AGENT_TYPES)},
        "time": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$"},
        "actor": {"type": "string", "minLength": 1, "maxLength": 300},
        "client_address": {"$ref": "#/$defs/address"},
        "run_id": {"type": ["string", "null"], "maxLength": 128},
        "task": {"type": ["string", "null"], "maxLength": 128},
        "subject": {"type": ["string", "null"], "maxLength": 4096},
        "data": {"type": "object"},
        "prev_hash": {"$ref": "#/$defs/hex64"},
        "hash": {"$ref": "#/$defs/hex64"},
    },
    "required": ["seq", "id", "type", "time", "actor", "client_address", "run_id", "task", "subject", "data",
                 "prev_hash", "hash"],
    "additionalProperties": False,
    "allOf": [{"if": {"properties": {"type": {"const": kind}}},
               "then": {"properties": {"data": {"$ref": "#/$defs/" + kind}}}} for kind in DATA],
    "$defs": {
        "hex64": HEX64,
        "name": NAME,
        "address": ADDRESS,
        "machine": _object({"id": {"type": "string", "minLength": 1, "maxLength": 256},
                            "hostname": {"type": "string", "minLength": 1, "maxLength": 256},
                            "user": {"type": "string", "minLength": 1, "maxLength": 256}}, ["id", "hostname"]),
        "file": _FILE,
        # Summaries are counts, names, digests and short strings: too short to carry a key or a token.
        "summary": {
            "type": "object", "maxProperties": 64,
            "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,63}$"},
            "additionalProperties": {
                "type": ["string", "integer", "number", "boolean", "null", "array"], "maxLength": 256,
                "maxItems": 100, "items": {"type": ["string", "integer", "boolean"], "maxLength": 256},
            },
        },
        **DATA,
    },
}


class SchemaError(ValueError):
    """An event does not match the schema; the message names the field and the rule."""


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _resolve(ref):
    node = SCHEMA
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _errors(schema, value, where):
    """The first rule that value breaks, as a message, or None."""
    if "$ref" in schema:
        return _errors(_resolve(schema["$ref"]), value, where)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](value) for k in kinds):
            return f"{where}: must be of type {' or '.join(kinds)}"
    if "const" in schema and value != schema["const"]:
        return f"{where}: must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: must be one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where}: must be at least {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where}: must be at most {schema['maxLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where}: must match {schema['pattern']}"
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where}: must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where}: must be at most {schema['maximum']}"
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where}: must have at most {schema['maxItems']} items"
        for index, item in enumerate(value):
            problem = "items" in schema and _errors(schema["items"], item, f"{where}[{index}]")
            if problem:
                return problem
    if isinstance(value, dict):
        problem = _object_errors(schema, value, where)
        if problem:
            return problem
    for part in schema.get("allOf", ()):
        if "if" in part:
            if _errors(part["if"], value, where) is None:
                problem = _errors(part["then"], value, where)
                if problem:
                    return problem
        else:
            problem = _errors(part, value, where)
            if problem:
                return problem
    return None


def _object_errors(schema, value, where):
    missing = [k for k in schema.get("required", ()) if k not in value]
    if missing:
        return f"{where}: missing field(s) {', '.join(missing)}"
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        return f"{where}: must have at most {schema['maxProperties']} fields"
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if "propertyNames" in schema:
            problem = _errors(schema["propertyNames"], key, f"{where}: field name {key!r}")
            if problem:
                return problem
        if key in properties:
            problem = _errors(properties[key], item, f"{where}.{key}")
        elif extra is False:
            problem = f"{where}: unknown field {key!r}"
        elif isinstance(extra, dict):
            problem = _errors(extra, item, f"{where}.{key}")
        else:
            problem = None
        if problem:
            return problem
    return None


def check_data(type_, data, where="data"):
    """Raise SchemaError unless data is what the schema allows for this event type."""
    if type_ not in DATA:
        raise SchemaError(f"unknown audit event type {type_!r}")
    problem = _errors(DATA[type_], data, where)
    if problem:
        raise SchemaError(problem)


def check_event(event):
    """Raise SchemaError unless a complete stored event matches the schema."""
    problem = _errors(SCHEMA, event, "event")
    if problem:
        raise SchemaError(problem)
