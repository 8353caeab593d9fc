"""Build an AWX survey spec from the role's meta/argument_specs.yml.

    python3 extensions/awx/survey.py > survey_spec.json

Every option of the entry point becomes a question, with the role's default, except the secrets
(no_log: they belong in the credential, never in a survey) and the options that the credential
supplies (their default in defaults/main.yml reads a BOOTSTRAP_SAAS_* environment variable).
job_template.yml carries the result; a test checks that the two stay the same.
"""
import json
import re
import sys
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "bootstrap_agent"
# Ansible's documentation markup, O(name), C(text), V(value), reduced to the text it marks.
MARKUP = re.compile(r"\b[A-Z]\(([^)]*)\)")
ENV_FALLBACK = re.compile(r"lookup\('ansible\.builtin\.env', 'BOOTSTRAP_SAAS_[A-Z_]+'\)")
QUESTION_TYPES = {"str": "text", "path": "text", "int": "integer", "float": "float"}


def _plain(text):
    return MARKUP.sub(lambda m: m.group(1).split("=", 1)[0] if m.group(0).startswith("O(") else m.group(1), text)


def _sentences(description):
    lines = [description] if isinstance(description, str) else list(description)
    return [_plain(" ".join(str(line).split())) for line in lines]


def credential_supplied(defaults):
    """Options whose default reads the environment that the credential type injects."""
    return {name for name, value in defaults.items() if isinstance(value, str) and ENV_FALLBACK.search(value)}


def question(name, option):
    sentences = _sentences(option.get("description", name))
    kind = option.get("type", "str")
    entry = {
        "variable": name,
        "question_name": sentences[0].split(". ")[0].rstrip(".")[:80],
        "question_description": " ".join(sentences),
        "required": bool(option.get("required", False)),
    }
    if kind == "bool":
        # AWX surveys have no boolean type; the role's bool options accept these strings.
        entry.update(type="multiplechoice", choices=["false", "true"],
                     default="true" if option.get("default") else "false")
    elif kind in QUESTION_TYPES:
        entry["type"] = QUESTION_TYPES[kind]
        entry["default"] = option.get("default", "" if entry["type"] == "text" else None)
        if entry["default"] is None:
            del entry["default"]
    else:
        raise ValueError("option %s: type %s has no survey question type" % (name, kind))
    return entry


def survey_spec(role=ROLE, entry_point="main"):
    specs = yaml.safe_load((Path(role) / "meta" / "argument_specs.yml").read_text())["argument_specs"][entry_point]
    defaults = yaml.safe_load((Path(role) / "defaults" / "main.yml").read_text()) or {}
    skip = credential_supplied(defaults)
    questions = [question(name, option) for name, option in specs["options"].items()
                 if not option.get("no_log") and name not in skip]
    # Required questions first, as a person fills them in.
    questions.sort(key=lambda q: not q["required"])
    return {"name": "Provision new hosts", "description": _sentences(specs["short_description"])[0],
            "spec": questions}


if __name__ == "__main__":
    json.dump(survey_spec(), sys.stdout, indent=2)
    sys.stdout.write("\n")
