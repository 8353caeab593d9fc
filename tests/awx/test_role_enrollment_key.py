"""The role with an enrollment key, through the real ansible-playbook: one token per host, refusals readable."""
import json
import re

from helpers.e2e import HOST_PYTHON, ThrowawayUser, run_playbook
from helpers.stack import CP_USER

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")


def new_key(stack):
    value = stack.cp.cli("enrollment-key", "new", "--data", stack.cp.data_dir, "--profile", "dev",
                         "--user", CP_USER).stdout.strip()
    return value, value.split(".")[1]


def key_vars(stack, key, user="nobody-here", **extra):
    return stack.role_vars("", user, bootstrap_agent_enrollment_key=key, **extra)


def test_one_play_mints_one_token_per_host_and_shows_none(stack, tmp_path):
    key, key_id = new_key(stack)
    with ThrowawayUser("bs-ek") as first, ThrowawayUser("bs-ek") as second:
        inventory = tmp_path / "hosts.json"
        inventory.write_text(json.dumps({"fleet": {"hosts": {
            "host-a": {"ansible_connection": "local", "ansible_python_interpreter": HOST_PYTHON,
                       "bootstrap_agent_user": first.name},
            "host-b": {"ansible_connection": "local", "ansible_python_interpreter": HOST_PYTHON,
                       "bootstrap_agent_user": second.name}}}}))
        values = key_vars(stack, key)
        del values["bootstrap_agent_user"]
        done = run_playbook(tmp_path, values, "-i", str(inventory), "-e", "bootstrap_hosts=fleet", "-vvv")
        assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
        for user in (first, second):
            assert (user.home / ".ssh" / "id_ed25519").read_bytes() == stack.ssh_key
    assert key not in done.stdout + done.stderr
    assert not JWT.search(done.stdout + done.stderr), "a token is shown at -vvv"
    trail = stack.cp.audit()
    minted = [e["data"]["fingerprint"] for e in trail
              if e["type"] == "token.minted" and e["actor"] == "enrollment-key:" + key_id]
    started = [e["data"]["fingerprint"] for e in trail if e["type"] == "run.started"]
    assert len(set(minted)) == 2 and set(minted) <= set(started)


def test_a_revoked_key_fails_the_play_with_the_reason(stack, tmp_path):
    key, key_id = new_key(stack)
    stack.cp.cli("enrollment-key", "revoke", "--data", stack.cp.data_dir, key_id)
    with ThrowawayUser("bs-ek") as user:
        done = run_playbook(tmp_path, key_vars(stack, key, user.name))
        assert not (user.home / ".config" / "bootstrap-saas").exists(), "nothing was redeemed"
    assert done.returncode != 0
    assert "refused to mint a token with this enrollment key (enrollment_key_revoked)" in done.stdout
    assert "enrollment key %s was revoked" % key_id in done.stdout
    assert key not in done.stdout + done.stderr


def test_a_token_and_an_enrollment_key_together_are_refused_before_anything(stack, tmp_path):
    key, key_id = new_key(stack)
    token = stack.mint()
    before = len(stack.cp.audit())
    done = run_playbook(tmp_path, key_vars(stack, key, bootstrap_agent_token=token))
    assert done.returncode != 0
    assert "mutually exclusive: enrollment_key|token" in done.stdout
    assert len(stack.cp.audit()) == before
    assert key not in done.stdout and token not in done.stdout
