"""The role as an AWX job runs it: ansible-runner, AWX's private data directory, the credential
type's injectors, a survey from the role's argument specs, the real control plane and a real user."""
import base64
import collections
import importlib.util
import re

import pytest

from awx_emulation import (AWX, job_output, load_yaml, render_injectors, run_job, survey_extra_vars,
                           write_private_data_dir)
from helpers.e2e import HOST_PYTHON, ThrowawayUser
from helpers.stack import CP_USER, sample_manifest

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")
HOST = "new-host-1"


def generator():
    spec = importlib.util.spec_from_file_location("awx_survey", AWX / "survey.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def job_template():
    return load_yaml(AWX / "job_template.yml")["job_templates"][0]


@pytest.fixture(scope="module")
def credential_type():
    return load_yaml(AWX / "credential_type.yml")


def launch(stack, tmp_path, job_template, credential_type, inputs, user):
    """One job: the credential's injectors, the survey's answers, verbosity 3 (Debug)."""
    pdd = tmp_path / "pdd"
    env = render_injectors(credential_type, inputs, pdd)
    extra = survey_extra_vars(job_template["related"]["survey_spec"], {"bootstrap_agent_user": user.name})
    hosts = {HOST: {"ansible_connection": "local", "ansible_python_interpreter": HOST_PYTHON}}
    write_private_data_dir(pdd, dict(job_template, verbosity=3), env, extra, hosts, tmp_path)
    return run_job(pdd, job_template)


def test_survey_is_the_one_built_from_the_argument_specs(job_template):
    survey = job_template["related"]["survey_spec"]
    assert survey == generator().survey_spec()
    asked = {q["variable"] for q in survey["spec"]}
    # Secrets and what the credential injects are never survey questions.
    assert "bootstrap_agent_user" in asked and not asked & {
        "bootstrap_agent_token", "bootstrap_agent_enrollment_key", "bootstrap_agent_user_key",
        "bootstrap_agent_url", "bootstrap_agent_ca_path"}


def test_credential_type_injects_what_the_role_and_lookup_read(credential_type):
    defaults = load_yaml(AWX.parents[1] / "roles" / "bootstrap_agent" / "defaults" / "main.yml")
    read = set(re.findall(r"BOOTSTRAP_SAAS_[A-Z_]+", " ".join(str(v) for v in defaults.values())))
    lookup = (AWX.parents[1] / "plugins" / "lookup" / "credential.py").read_text()
    read |= set(re.findall(r'KEY_ENV = "(BOOTSTRAP_SAAS_[A-Z_]+)"', lookup))
    assert set(credential_type["injectors"]["env"]) == read
    fields = {f["id"]: f for f in credential_type["inputs"]["fields"]}
    assert {k for k, f in fields.items() if f.get("secret")} == {"enrollment_key", "token", "user_key"}


def test_job_with_an_enrollment_key_succeeds_and_audits_every_step(stack, tmp_path, job_template,
                                                                   credential_type):
    key = stack.cp.cli("enrollment-key", "new", "--data", stack.cp.data_dir, "--profile", "dev",
                       "--user", CP_USER).stdout.strip()
    key_id = key.split(".")[1]
    inputs = {"url": stack.cp.url, "ca_pem": stack.cp.ca_path.read_text(), "enrollment_key": key,
              "user_key": stack.user_key_file.read_text()}
    with ThrowawayUser("bs-awx") as user:
        job = launch(stack, tmp_path, job_template, credential_type, inputs, user)
        events, seen = job_output(job)
        assert (job.status, job.rc) == ("successful", 0), seen[-4000:]
        for entry in sample_manifest()["files"]:
            assert (user.home / entry["path"][2:]).is_file(), entry["path"]
        assert (user.home / ".ssh" / "id_ed25519").read_bytes() == stack.ssh_key

    # Nothing secret in what AWX shows of the job, at verbosity 3.
    ssh_key_body = stack.ssh_key.decode().splitlines()[1]
    user_key_k = re.search(r'"k"\s*:\s*"([^"]+)"', stack.user_key_file.read_text()).group(1)
    for secret in (key, key.split(".")[2], ssh_key_body, user_key_k):
        assert secret not in seen
    assert not JWT.search(seen), "a token is shown in the job's output"
    assert any(e.get("event") == "runner_on_ok" and e["event_data"].get("task_action", "").endswith("token_mint")
               for e in events)

    trail = stack.cp.audit()
    minted = [e for e in trail if e["type"] == "token.minted" and e["actor"] == "enrollment-key:" + key_id]
    assert len(minted) == 1 and minted[0]["data"]["profile"] == "dev" and minted[0]["data"]["user"] == CP_USER
    fp = minted[0]["data"]["fingerprint"]
    assert fp in seen  # the fingerprint is how the job names its token
    assert [e["type"] for e in trail if e["type"] == "enrollment_key.created" and e["subject"] == key_id]
    assert any(e["type"] == "token.validated" and e["data"]["fingerprint"] == fp for e in trail)
    started = [e for e in trail if e["type"] == "run.started" and e["data"]["fingerprint"] == fp]
    assert len(started) == 1
    run = collections.Counter(e["type"] for e in trail if e["run_id"] == started[0]["run_id"])
    assert run["file.written"] == len(sample_manifest()["files"])
    assert run["task.completed"] == 2 and run["run.finished"] == 1
    assert stack.cp.audit_verify().returncode == 0


def test_job_with_a_bad_token_fails_with_the_reason_in_its_events(stack, tmp_path, job_template, credential_type):
    header, payload, signature = stack.mint().split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    forged = ".".join([header, payload, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])
    inputs = {"url": stack.cp.url, "ca_pem": stack.cp.ca_path.read_text(), "token": forged,
              "user_key": stack.user_key_file.read_text()}
    with ThrowawayUser("bs-awx") as user:
        job = launch(stack, tmp_path, job_template, credential_type, inputs, user)
        events, seen = job_output(job)
        assert (job.status, job.rc) == ("failed", 2), seen[-4000:]
        assert not (user.home / ".config" / "bootstrap-saas").exists(), "nothing was redeemed"
    failed = [e for e in events if e.get("event") == "runner_on_failed"]
    assert len(failed) == 1
    data = failed[0]["event_data"]
    assert data["task_action"].endswith("token_verify")
    assert data["res"]["reason"] == "bad_signature"
    assert "token refused (bad_signature): the signature does not verify" in data["res"]["msg"]
    assert forged not in seen
