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


def _compile(schema, compiled_refs):
    """A checker for one schema node: check(value, where) returns the first rule value breaks, or None.

    The schema is turned into closures once, so that each event pays only for the keywords its
    fields carry (walking the schema dicts per event was most of the audit ingest time). Rules are
    checked in a fixed order: type, const, enum, string, number, array, object, allOf.
    """
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref not in compiled_refs:
            compiled_refs[ref] = None  # a placeholder while compiling: references may be recursive
            node = SCHEMA
            for part in ref[2:].split("/"):
                node = node[part]
            compiled_refs[ref] = _compile(node, compiled_refs)
        return lambda value, where: compiled_refs[ref](value, where)
    rules = []
    if "type" in schema:
        kinds = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        tests = [_TYPES[k] for k in kinds]
        message = " or ".join(kinds)
        rules.append(lambda v, w: None if any(t(v) for t in tests) else f"{w}: must be of type {message}")
    if "const" in schema:
        const = schema["const"]
        rules.append(lambda v, w: None if v == const else f"{w}: must be {const!r}")
    if "enum" in schema:
        enum = schema["enum"]
        rules.append(lambda v, w: None if v in enum else f"{w}: must be one of {', '.join(map(str, enum))}")
    rules += _string_rules(schema) + _number_rules(schema) + _array_rules(schema, compiled_refs)
    rules += _object_rules(schema, compiled_refs) + _all_of_rules(schema, compiled_refs)
    return _only_for(lambda value: True, rules)


def _string_rules(schema):
    rules = []
    if "minLength" in schema:
        low = schema["minLength"]
        rules.append(lambda v, w: f"{w}: must be at least {low} characters" if len(v) < low else None)
    if "maxLength" in schema:
        high = schema["maxLength"]
        rules.append(lambda v, w: f"{w}: must be at most {high} characters" if len(v) > high else None)
    if "pattern" in schema:
        pattern, search = schema["pattern"], re.compile(schema["pattern"]).search
        rules.append(lambda v, w: None if search(v) else f"{w}: must match {pattern}")
    return [_only_for(lambda v: isinstance(v, str), rules)] if rules else []


def _number_rules(schema):
    rules = []
    if "minimum" in schema:
        low = schema["minimum"]
        rules.append(lambda v, w: f"{w}: must be at least {low}" if v < low else None)
    if "maximum" in schema:
        high = schema["maximum"]
        rules.append(lambda v, w: f"{w}: must be at most {high}" if v > high else None)
    return [_only_for(_TYPES["number"], rules)] if rules else []


def _array_rules(schema, compiled_refs):
    rules = []
    if "maxItems" in schema:
        high = schema["maxItems"]
        rules.append(lambda v, w: f"{w}: must have at most {high} items" if len(v) > high else None)
    if "items" in schema:
        item_check = _compile(schema["items"], compiled_refs)

        def items(value, where):
            for index, item in enumerate(value):
                problem = item_check(item, f"{where}[{index}]")
                if problem:
                    return problem
            return None
        rules.append(items)
    return [_only_for(lambda v: isinstance(v, list), rules)] if rules else []


def _object_rules(schema, compiled_refs):
    object_keywords = ("required", "maxProperties", "properties", "additionalProperties", "propertyNames")
    if not any(k in schema for k in object_keywords):
        return []
    required = schema.get("required", ())
    most = schema.get("maxProperties")
    properties = {key: _compile(rule, compiled_refs) for key, rule in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    extra_check = _compile(extra, compiled_refs) if isinstance(extra, dict) else None
    name_check = _compile(schema["propertyNames"], compiled_refs) if "propertyNames" in schema else None

    def check(value, where):
        missing = [k for k in required if k not in value]
        if missing:
            return f"{where}: missing field(s) {', '.join(missing)}"
        if most is not None and len(value) > most:
            return f"{where}: must have at most {most} fields"
        for key, item in value.items():
            if name_check is not None:
                problem = name_check(key, f"{where}: field name {key!r}")
                if problem:
                    return problem
            if key in properties:
                problem = properties[key](item, f"{where}.{key}")
            elif extra is False:
                problem = f"{where}: unknown field {key!r}"
            elif extra_check is not None:
                problem = extra_check(item, f"{where}.{key}")
            else:
                problem = None
            if problem:
                return problem
        return None
    return [_only_for(lambda v: isinstance(v, dict), [check])]


def _all_of_rules(schema, compiled_refs):
    parts = schema.get("allOf", ())
    switch = _switch_on_field(parts)
    if switch:
        key, cases = switch
        thens = {const: _compile(then, compiled_refs) for const, then in cases}

        # The event schema's allOf is one `if type == KIND then data is KIND's`, per kind: a lookup.
        def by_field(value, where):
            if not isinstance(value, dict) or key not in value:  # an absent field satisfies every `if`
                return next(filter(None, (then(value, where) for then in thens.values())), None)
            chosen = next((then for const, then in thens.items() if const == value[key]), None)
            return chosen(value, where) if chosen else None
        return [by_field]
    rules = []
    for part in parts:
        if "if" in part:
            condition, then = _compile(part["if"], compiled_refs), _compile(part["then"], compiled_refs)
            rules.append(lambda v, w, condition=condition, then=then: then(v, w) if condition(v, w) is None else None)
        else:
            rules.append(_compile(part, compiled_refs))
    return rules


def _switch_on_field(parts):
    """(field, [(constant, then schema)]) when every part is `if: {properties: {field: {const: C}}}, then`."""
    cases, keys = [], set()
    for part in parts:
        condition = part.get("if")
        if set(part) != {"if", "then"} or set(condition) != {"properties"} or len(condition["properties"]) != 1:
            return None
        (key, rule), = condition["properties"].items()
        if set(rule) != {"const"} or not isinstance(rule["const"], str):
            return None
        keys.add(key)
        cases.append((rule["const"], part["then"]))
    if len(keys) != 1 or len({c for c, _ in cases}) != len(cases):
        return None
    return keys.pop(), cases


def _only_for(applies, rules):
    """The first problem of the rules, for values that applies() accepts: JSON Schema's keywords for
    strings, numbers, arrays and objects ignore values of other types."""
    def check(value, where):
        if not applies(value):
            return None
        for rule in rules:
            problem = rule(value, where)
            if problem:
                return problem
        return None
    return check


_COMPILED_REFS = {}
_CHECK_EVENT = _compile(SCHEMA, _COMPILED_REFS)
_CHECK_DATA = {kind: _compile(schema, _COMPILED_REFS) for kind, schema in DATA.items()}


def check_data(type_, data, where="data"):
    """Raise SchemaError unless data is what the schema allows for this event type."""
    if type_ not in DATA:
        raise SchemaError(f"unknown audit event type {type_!r}")
    problem = _CHECK_DATA[type_](data, where)
    if problem:
        raise SchemaError(problem)


def check_event(event):
    """Raise SchemaError unless a complete stored event matches the schema."""
    problem = _CHECK_EVENT(event, "event")
    if problem:
        raise SchemaError(problem)
