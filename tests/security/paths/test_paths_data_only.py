"""Profiles are data: template syntax in a profile reaches the home as those characters, through
the whole role (check mode with diff first, then for real), and nothing it names runs."""
import secrets
from pathlib import Path

from helpers.e2e import ThrowawayUser, run_playbook
from helpers.stack import Stack

NAME = "{{ lookup('pipe', 'id') }}"


def test_template_syntax_in_a_profile_is_written_literally_and_nothing_runs(tmp_path):
    marker = Path("/tmp/bs-paths-ran-%s" % secrets.token_hex(4))
    content = ("{{ lookup('pipe', 'touch %s') }}\n{%% for x in [1] %%}{{ x }}{%% endfor %%}\n$(touch %s)\n"
               % (marker, marker))
    manifest = {"files": [
        {"path": "~/.config/tmpl/literal.txt", "mode": "0644", "content": content},
        {"path": "~/.config/tmpl/" + NAME, "mode": "0644", "content": "named\n"},
        {"path": "~/.bashrc", "mode": "0644", "manage": "block", "content": content},
    ]}
    stack = Stack(tmp_path / "stack")
    try:
        stack.cp.set_profile("templated", manifest)
        token = stack.mint(profile="templated")
        with ThrowawayUser(prefix="bs-pt") as user:
            check = run_playbook(tmp_path, stack.role_vars(token, user.name), "--check", "--diff")
            assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
            # The manifest travels through Ansible as a module option; its path is shown as is.
            assert str(user.home / ".config" / "tmpl" / NAME) in check.stdout, check.stdout[-4000:]
            assert "uid=0(root)" not in check.stdout
            assert not (user.home / ".config" / "tmpl").exists()

            real = run_playbook(tmp_path, stack.role_vars(token, user.name), "--diff")
            assert real.returncode == 0, real.stdout[-4000:] + real.stderr[-2000:]
            tmpl = user.home / ".config" / "tmpl"
            assert (tmpl / "literal.txt").read_text() == content
            assert (tmpl / NAME).read_text() == "named\n"
            assert sorted(p.name for p in tmpl.iterdir()) == sorted(["literal.txt", NAME])
            assert content in (user.home / ".bashrc").read_text()
            assert "lookup('pipe', 'touch %s')" % marker in real.stdout   # the diff shows it literally
            assert "uid=0(root)" not in real.stdout and not marker.exists()
    finally:
        stack.cp.stop()
        if marker.exists():
            marker.unlink()
