"""The server's own event checker (events.py) against a reference JSON Schema validator.

The server compiles the schema into small checkers for speed; this shows, on generated events both
valid and broken, that it accepts exactly what the jsonschema package's Draft 2020-12 validator
accepts for the same schema.
"""
import copy

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap_controlplane import events

REFERENCE = jsonschema.Draft202012Validator(events.SCHEMA)

VALID = {
    "seq": 1, "id": "a" * 32, "type": "file.written", "time": "2026-01-01T00:00:00Z", "actor": "m/h",
    "client_address": None, "run_id": "r" * 32, "task": "home_files", "subject": "~/.zshrc",
    "data": {"mode": "0644", "owner": "alice", "sha256": "b" * 64}, "prev_hash": "0" * 64, "hash": "1" * 64,
}
FIELD_NAMES = sorted({name for schema in events.DATA.values() for name in schema.get("properties", {})}
                     | set(VALID) | {"extra"})
LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "0644", "0999", "a" * 64, "x" * 300, "alice", "~/.x", "present", "block"]
                    + list(events.DATA)),
    st.text(max_size=6))
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=5)), max_leaves=12)


def _verdicts(event):
    problem = None
    try:
        events.check_event(event)
    except events.SchemaError as exc:
        problem = str(exc)
    return problem, REFERENCE.is_valid(event)


def test_the_valid_example_is_valid():
    assert _verdicts(VALID) == (None, True)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(list(events.DATA) + ["no.such.kind"]),
       changes=st.lists(st.tuples(st.sampled_from(FIELD_NAMES), VALUES), max_size=3),
       data_changes=st.lists(st.tuples(st.sampled_from(FIELD_NAMES), VALUES), max_size=4),
       drops=st.lists(st.sampled_from(sorted(VALID)), max_size=2))
def test_server_checker_agrees_with_the_reference_validator(kind, changes, data_changes, drops):
    event = copy.deepcopy(VALID)
    event["type"] = kind
    for name, value in data_changes:
        event["data"][name] = value
    for name, value in changes:
        event[name] = value
    for name in drops:
        event.pop(name, None)
    problem, reference_valid = _verdicts(event)
    assert (problem is None) == reference_valid, (event, problem)
