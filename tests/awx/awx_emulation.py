"""What AWX does around ansible-runner for a job, done here the same way so that a job runs as in AWX.

- the private data directory: project/ (the synced project), inventory/hosts (an executable script
  printing the inventory JSON), env/extravars, env/envvars, env/settings, env/passwords, env/cmdline;
- the credential type's injectors rendered with the credential's inputs in a sandboxed Jinja
  environment: file templates become 0600 files under env/ named in the `tower.filename` namespace,
  env templates become environment variables;
- the survey: answers given at launch are validated against the survey spec and, like every
  launch-time extra var, marked !unsafe; unanswered questions take their defaults.
"""
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import ansible_runner
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from helpers.e2e import COLLECTIONS, HOST_PYTHON, REPO

AWX = REPO / "extensions" / "awx"
VERBOSITY = {0: "", 1: "-v", 2: "-vv", 3: "-vvv", 4: "-vvvv", 5: "-vvvvv"}


def load_yaml(path):
    return yaml.safe_load(Path(path).read_text())


class _Namespace:
    pass


class Unsafe(str):
    """A launch-time extra var: AWX writes these with the !unsafe tag so they are never templated."""


def _unsafe_representer(dumper, value):
    return dumper.represent_scalar("!unsafe", str(value))


class _ExtraVarsDumper(yaml.SafeDumper):
    pass


_ExtraVarsDumper.add_representer(Unsafe, _unsafe_representer)


def render_injectors(credential_type, inputs, private_data_dir):
    """The credential's environment, with its files written, as AWX's CredentialType.inject_credential does."""
    sandbox = ImmutableSandboxedEnvironment()
    namespace = dict(inputs)
    tower = namespace["tower"] = _Namespace()
    env_dir = Path(private_data_dir) / "env"
    env_dir.mkdir(parents=True, exist_ok=True)
    injectors = credential_type.get("injectors", {})
    for label, template in injectors.get("file", {}).items():
        fd, path = tempfile.mkstemp(prefix="awx_", dir=str(env_dir))
        with os.fdopen(fd, "w") as f:
            f.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        if "." not in label:
            tower.filename = path
        else:
            if not hasattr(tower, "filename"):
                tower.filename = _Namespace()
            setattr(tower.filename, label.split(".", 1)[1], path)
    return {name: sandbox.from_string(template).render(**namespace)
            for name, template in injectors.get("env", {}).items()}


def survey_extra_vars(survey, answers):
    """Extra vars from a survey: answers (checked as AWX checks them) over the questions' defaults."""
    unknown = set(answers) - {q["variable"] for q in survey["spec"]}
    assert not unknown, "answers to questions the survey does not ask: %s" % sorted(unknown)
    extra = {}
    for q in survey["spec"]:
        name = q["variable"]
        if name in answers:
            value = answers[name]
            if q["type"] == "integer":
                assert isinstance(value, int) and not isinstance(value, bool), name
            elif q["type"] == "multiplechoice":
                assert value in q["choices"], name
            extra[name] = Unsafe(value) if isinstance(value, str) else value
        elif q.get("default") not in (None, ""):
            extra[name] = q["default"]
        else:
            assert not q["required"], "survey question %s is required" % name
    return extra


def inventory_script(hosts):
    """AWX hands ansible-runner the inventory as an executable script that prints its JSON."""
    data = {"all": {"hosts": sorted(hosts)}, "_meta": {"hostvars": hosts}}
    return "#! %s\n# -*- coding: utf-8 -*-\nprint(%r)\n" % (HOST_PYTHON, json.dumps(data))


def write_private_data_dir(pdd, job_template, credential_env, extra_vars, hosts, work):
    pdd = Path(pdd)
    shutil.copytree(AWX / "project", pdd / "project")
    inventory = pdd / "inventory" / "hosts"
    inventory.parent.mkdir(parents=True)
    inventory.write_text(inventory_script(hosts))
    inventory.chmod(0o700)
    env = pdd / "env"
    env.mkdir(exist_ok=True)
    ansible_home = Path(work) / "ansible-home"
    envvars = dict(credential_env)
    # What AWX sets for every job, and where the execution environment keeps its collections.
    envvars.update({
        "ANSIBLE_COLLECTIONS_PATH": "%s:%s" % (pdd / "requirements_collections", COLLECTIONS),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_FORCE_COLOR": "True",
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_HOME": str(ansible_home),
        "ANSIBLE_LOCAL_TEMP": str(ansible_home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(ansible_home / "remote-tmp"),
        "JOB_ID": "1",
        "AWX_HOST": "https://awx.example.invalid",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    })
    _write(env / "envvars", yaml.safe_dump(envvars))
    _write(env / "extravars", yaml.dump(extra_vars, Dumper=_ExtraVarsDumper))
    _write(env / "settings", yaml.safe_dump({"job_timeout": 240, "idle_timeout": 120, "pexpect_timeout": 5,
                                             "suppress_ansible_output": True}))
    _write(env / "passwords", yaml.safe_dump({}))
    _write(env / "cmdline", VERBOSITY[job_template.get("verbosity", 0)])
    return pdd


def _write(path, text):
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def run_job(pdd, job_template):
    """ansible-runner, as AWX's task runs it; returns the Runner (status, rc, events)."""
    return ansible_runner.run(private_data_dir=str(pdd), playbook=job_template["playbook"], quiet=True,
                              ident="job")


def job_output(runner):
    """Everything a person can see of a job: its events (as AWX stores them) and its stdout."""
    events = list(runner.events)
    return events, json.dumps(events) + runner.stdout.read()
