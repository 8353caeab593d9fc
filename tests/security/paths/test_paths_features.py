"""What users expect of a dotfile tool, through the real module across three profile versions:
authorized_keys merged (the user's lines and the key Ansible connects with are kept), rc files as a
marked block in the user's own file, state absent, files dropped by a new version removed unless
the user changed them, backups, exact replacement on request, check mode and diff mode."""
import json
import os
import stat

import pytest

from helpers.e2e import ThrowawayUser
from paths_support import SSH_KEY, STATE, PathsControlPlane, install_state, reset_home, run_home_files

CONNECTING = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConnecting ansible@controller"
KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey1 one@example.com"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey2 two@example.com"
KEY3 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey3 three@example.com"
BEGIN = "# BEGIN bootstrap-saas managed block"
END = "# END bootstrap-saas managed block"


def keys(*lines):
    return "".join(line + "\n" for line in lines)


V1 = [
    {"path": "~/.ssh/authorized_keys", "mode": "0600", "content": keys(KEY1, CONNECTING, KEY2)},
    {"path": "~/.bashrc", "mode": "0644", "manage": "block", "content": "export A=1\n"},
    {"path": "~/.config/app/a.conf", "mode": "0644", "content": "a = 1\n"},
    {"path": "~/.config/app/b.conf", "mode": "0644", "content": "b = 1\n"},
    {"path": "~/.zshrc", "mode": "0644", "backup": True, "content": "# from the profile\n"},
    {"path": "~/.local/bin/tool", "mode": "0755", "content": "#!/bin/sh\necho tool\n"},
    {"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"},
]
V2 = [
    {"path": "~/.ssh/authorized_keys", "mode": "0600", "content": keys(KEY2, KEY3)},
    {"path": "~/.bashrc", "mode": "0644", "manage": "block", "content": "export A=2\n"},
    {"path": "~/.zshrc", "state": "absent", "backup": True},
    {"path": "~/.local/bin/tool", "mode": "0755", "content": "#!/bin/sh\necho tool\n"},
    {"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"},
]
V3 = [
    {"path": "~/.ssh/authorized_keys", "mode": "0600", "manage": "file", "content": keys(KEY3)},
    {"path": "~/.bashrc", "manage": "block", "state": "absent"},
    {"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"},
]


@pytest.fixture(scope="module")
def features_cp(tmp_path_factory):
    cp = PathsControlPlane(tmp_path_factory.mktemp("features-cp"))
    yield cp
    cp.stop()


def redeem(cp, user, files):
    run, profile, stored = cp.new_run("f-" + user.name, files)
    assert stored
    install_state(user, run, profile)
    return run["run_id"]


def one(workdir, user, **kwargs):
    (result,) = run_home_files(workdir, [{"user": user.name}], **kwargs)
    return result


def by_path(result, key="files"):
    return {f["path"]: f for f in result[key]}


def test_merge_block_absent_dropped_backup_exact_check_and_diff(features_cp, tmp_path):
    with ThrowawayUser(prefix="bs-pf") as user:
        home = user.home
        reset_home(user)
        skel_bashrc = (home / ".bashrc").read_text()
        (home / ".ssh").mkdir(mode=0o700)
        (home / ".ssh" / "authorized_keys").write_text("# the user's own\n" + CONNECTING + "\n")
        (home / ".zshrc").write_text("# mine\n")
        os.chmod(home / ".ssh" / "authorized_keys", 0o600)
        for p in (".ssh", ".ssh/authorized_keys", ".zshrc"):
            os.chown(home / p, user.pw.pw_uid, user.pw.pw_gid)
        redeem(features_cp, user, V1)

        # Check mode with diff: nothing written, the change shown, the credential hidden.
        before = sorted(p.name for p in home.iterdir())
        check = one(tmp_path, user, check=True, diff=True)
        assert not check.get("failed"), check.get("msg")
        assert check["changed"] and all(f["changed"] for f in check["files"])
        assert sorted(p.name for p in home.iterdir()) == before
        diffs = {d["after_header"]: d for d in check["diff"]}
        assert diffs[str(home / ".ssh/id_ed25519")]["after"] == "<credential ssh_key: content hidden>\n"
        assert SSH_KEY.decode().splitlines()[1] not in json.dumps(check)
        assert diffs[str(home / ".bashrc")]["after"] == skel_bashrc + BEGIN + "\nexport A=1\n" + END + "\n"
        assert diffs[str(home / ".ssh/authorized_keys")]["after"] == (
            "# the user's own\n" + CONNECTING + "\n" + KEY1 + "\n" + KEY2 + "\n")

        first = one(tmp_path, user)
        assert not first.get("failed"), first.get("msg")
        files = by_path(first)
        assert files["~/.ssh/authorized_keys"]["manage"] == "merge"
        assert (home / ".ssh/authorized_keys").read_text() == (
            "# the user's own\n" + CONNECTING + "\n" + KEY1 + "\n" + KEY2 + "\n")
        assert (home / ".bashrc").read_text() == skel_bashrc + BEGIN + "\nexport A=1\n" + END + "\n"
        backup = files["~/.zshrc"]["backup"]
        assert backup.startswith("~/.config/bootstrap-saas/backups/") and backup.endswith("/.zshrc")
        backup_file = home / backup[2:]
        assert backup_file.read_text() == "# mine\n" and stat.S_IMODE(backup_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((home / ".local/bin/tool").stat().st_mode) == 0o755
        record = json.loads((home.joinpath(*STATE) / "files.json").read_text())
        # The connecting key was there before the agent: it is the user's, not the agent's.
        assert record["entries"]["~/.ssh/authorized_keys"]["keys"] == [KEY1, KEY2]

        again = one(tmp_path, user)
        assert not again.get("failed") and again["changed"] is False, again.get("msg")

        # Version 2: KEY1 goes, KEY3 comes, the block is replaced in place, a.conf and b.conf are
        # dropped (b.conf was edited by the user and stays), ~/.zshrc is absent (backed up first).
        (home / ".bashrc").write_text((home / ".bashrc").read_text() + "alias ll='ls -l'\n")
        (home / ".config/app/b.conf").write_text("b = mine\n")
        redeem(features_cp, user, V2)
        second = one(tmp_path, user)
        assert not second.get("failed"), second.get("msg")
        assert (home / ".ssh/authorized_keys").read_text() == (
            "# the user's own\n" + CONNECTING + "\n" + KEY2 + "\n" + KEY3 + "\n")
        assert (home / ".bashrc").read_text() == (
            skel_bashrc + BEGIN + "\nexport A=2\n" + END + "\n" + "alias ll='ls -l'\n")
        assert not (home / ".config/app/a.conf").exists()
        assert (home / ".config/app/b.conf").read_text() == "b = mine\n"
        removed = by_path(second, "removed")
        assert removed["~/.config/app/a.conf"]["changed"] is True
        assert removed["~/.config/app/b.conf"]["kept"] == "changed since the agent wrote it"
        assert not (home / ".zshrc").exists()
        zshrc = by_path(second)["~/.zshrc"]
        assert zshrc["state"] == "absent" and zshrc["changed"] is True
        assert (home / zshrc["backup"][2:]).read_text() == "# from the profile\n"
        assert by_path(second)["~/.local/bin/tool"]["changed"] is False

        # Version 3: exact replacement only because the profile asks for it; the block is removed
        # and the user's own lines around it stay.
        run3 = redeem(features_cp, user, V3)
        third = one(tmp_path, user, diff=True)
        assert not third.get("failed"), third.get("msg")
        assert (home / ".ssh/authorized_keys").read_text() == KEY3 + "\n"
        assert (home / ".bashrc").read_text() == skel_bashrc + "alias ll='ls -l'\n"
        assert not (home / ".local/bin/tool").exists()
        types = {(e["type"], e["subject"]) for e in features_cp.events(run3)}
        assert ("file.removed", "~/.local/bin/tool") in types
        assert ("file.written", "~/.bashrc") in types
        record = json.loads((home.joinpath(*STATE) / "files.json").read_text())
        assert sorted(record["paths"]) == ["~/.ssh/authorized_keys", "~/.ssh/id_ed25519"]
