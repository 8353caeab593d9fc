"""Stored credentials that look like templates come out literally, on the lowest and the highest ansible-core.

One real run per ansible-core: the role decrypts and writes them with home_files, then the play
passes them through set_fact twice and writes them again; nothing is evaluated anywhere.
"""
import json
import secrets
from pathlib import Path

import pytest

from credential_support import LOOKUP, run_play
from helpers.e2e import ThrowawayUser
from helpers.stack import CP_USER, Stack

PWNED = Path("/tmp/pwned-%s" % secrets.token_hex(6))
VALUES = {
    "ssh_key": "{{ lookup('pipe', 'touch %s') }}" % PWNED,
    "api_token": "a\n{{ 7*7 }}",
    # templated, this would print the user's key
    "note": "{{ bootstrap_agent_user_key }}{%% if true %%}x{%% endif %%}",
}
PROFILE = {"files": [
    {"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"},
    {"path": "~/.config/bs-templating/token", "mode": "0600", "credential": "api_token"},
    {"path": "~/.config/bs-templating/note", "mode": "0600", "credential": "note"},
]}
HOME_PATHS = {"ssh_key": ".ssh/id_ed25519", "api_token": ".config/bs-templating/token",
              "note": ".config/bs-templating/note"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("templating"))
    try:
        for name, value in VALUES.items():
            s.cp.put_credential(CP_USER, name, s.user_key_file, value.encode())
        s.cp.set_profile("templating", PROFILE)
        yield s
    finally:
        s.cp.stop()


def test_template_lookalikes_pass_through_the_role_set_fact_and_home_files_literally(stack, core_bin, tmp_path):
    names = list(VALUES)
    out_list, out_one = tmp_path / "list.json", tmp_path / "one.txt"
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "roles": [{"role": "bootstrap_saas.provisioning.bootstrap_agent"}],
        "tasks": [
            {"name": "decrypt again after the role", "ansible.builtin.set_fact": {
                "first": "{{ query('%s', %s, envelopes=_bootstrap_agent_run.credentials, "
                         "user=_bootstrap_agent_verified.user, user_key=bootstrap_agent_user_key) }}"
                         % (LOOKUP, ", ".join("'%s'" % n for n in names))}},
            {"name": "through another fact", "ansible.builtin.set_fact": {"second": "{{ first }}"}},
            {"name": "one element", "ansible.builtin.set_fact": {"third": "{{ second[1] }}"}},
            {"ansible.builtin.copy": {"content": "{{ second | to_json }}", "dest": str(out_list)}},
            {"ansible.builtin.copy": {"content": "{{ third }}", "dest": str(out_one)}},
        ],
    }]
    key_k = json.loads(stack.user_key_file.read_text())["keys"][0]["k"]
    with ThrowawayUser("bs-tmpl") as user:
        proc = run_play(tmp_path, play, stack.role_vars(stack.mint("templating"), user.name), "-v", bindir=core_bin)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-5000:]
        for name, value in VALUES.items():
            assert (user.home / HOME_PATHS[name]).read_text() == value, name
    assert json.loads(out_list.read_text()) == [VALUES[n] for n in names]
    assert out_one.read_text() == VALUES["api_token"]
    assert not PWNED.exists()
    assert key_k not in output
