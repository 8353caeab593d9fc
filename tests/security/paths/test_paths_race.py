"""Symlink swaps raced from a second process while the real home_files module runs.

Each home has a racer running as its user for the whole playbook: one keeps swapping ~/.ssh for a
link to a directory anyone may write to, one swaps ~/.config/git for a link to an /etc-like tree,
and one replaces every temporary file the agent creates in ~/.ssh with a link to a root-owned
file, between its creation and its rename. Whatever the interleaving, nothing outside the home
changes and every file the agent reports written is a regular file in the home.
"""
import contextlib
import os
import secrets
import shutil
import signal
import time
from pathlib import Path

import pytest

from helpers.e2e import ThrowawayUser, snapshot
from paths_corpus import Layout, make_traps
from paths_support import (CANARY, PathsControlPlane, contents, install_state, reset_home, run_home_files,
                           system_problems)

REPEATS = 4
RACE_RULES = {"symlink", "changed"}
BIG = ("# %s\n" % CANARY) + "# padding so that the write takes a while\n" * 6000


@pytest.fixture(scope="module")
def race_cp(tmp_path_factory):
    cp = PathsControlPlane(tmp_path_factory.mktemp("race-cp"))
    yield cp
    cp.stop()


def swap_dir(home, rel, target):
    """Forever: move the directory aside, put a link to ``target`` in its place, move it back."""
    real, aside = home / rel, home / (rel + "-aside")
    while True:
        try:
            os.rename(real, aside)
            os.symlink(str(target), str(real))
            os.unlink(real)
            os.rename(aside, real)
        except OSError:
            time.sleep(0)


def swap_temp_names(home, target):
    """Forever: replace each of the agent's temporary files in ~/.ssh with a link to ``target``."""
    ssh = home / ".ssh"
    while True:
        try:
            for name in os.listdir(ssh):
                if name.startswith(".bs-tmp-") and not os.path.islink(ssh / name):
                    os.symlink(str(target), str(ssh / (name + ".x")))
                    os.rename(ssh / (name + ".x"), ssh / name)
        except OSError:
            pass


def start_racer(pw, function, *args):
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            function(*args)
        finally:
            os._exit(0)
    return pid


RACES = [
    ("ssh-dir-swap", [{"path": "~/.ssh/authorized_keys", "mode": "0600", "manage": "file", "content": BIG},
                      {"path": "~/.ssh/config", "mode": "0644", "content": BIG}],
     lambda h: h.dir(".ssh"), lambda h: (swap_dir, h.home, ".ssh", h.trap / "open")),
    ("config-dir-swap", [{"path": "~/.config/git/config", "mode": "0644", "content": BIG},
                         {"path": "~/.config/git/ignore", "mode": "0644", "content": BIG}],
     lambda h: h.dir(".config/git"), lambda h: (swap_dir, h.home, ".config/git", h.trap / "etc")),
    ("temp-name-swap", [{"path": "~/.ssh/config", "mode": "0644", "content": BIG}],
     lambda h: h.dir(".ssh"), lambda h: (swap_temp_names, h.home, h.rtrap / ".ssh" / "authorized_keys")),
]


@pytest.mark.parametrize("as_user", [False, True], ids=["as-root-for-the-user", "as-the-user"])
def test_symlink_swaps_raced_from_a_second_process(race_cp, tmp_path, as_user):
    token = secrets.token_hex(3)
    trap_root, rtrap_root = Path("/tmp/bs-trap-%s" % token), Path("/root/bs-trap-%s" % token)
    trap_root.mkdir(mode=0o755)
    rtrap_root.mkdir(mode=0o700)
    racers = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, trap_root, True)
        stack.callback(shutil.rmtree, rtrap_root, True)
        layouts = []
        for name, files, plant, race in RACES:
            user = stack.enter_context(ThrowawayUser(prefix="bs-pr"))
            layout = Layout(user.home, user.pw, trap_root / name, rtrap_root / name)
            make_traps(layout.trap, layout.rtrap)
            reset_home(user)
            run, profile, stored = race_cp.new_run("r-" + secrets.token_hex(6), files)
            assert stored
            install_state(user, run, profile)
            plant(layout)
            layouts.append((name, user, layout, race))
        traps_before = contents([trap_root, rtrap_root])
        system_before = snapshot(["/etc", "/opt"])
        try:
            for _name, user, layout, race in layouts:
                function, *args = race(layout)
                racers.append(start_racer(user.pw, function, *args))
            items = [{"user": user.name} for dummy in range(REPEATS) for _name, user, _l, _r in layouts]
            results = run_home_files(tmp_path, items, as_user=as_user)
        finally:
            for pid in racers:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        assert contents([trap_root, rtrap_root]) == traps_before
        assert system_problems(system_before, snapshot(["/etc", "/opt"])) == []

        outcomes = {}
        for (name, user, layout, _race), result in zip(layouts * REPEATS, results):
            if result.get("failed"):
                rules = set(r["rule"] for r in result.get("refused") or [])
                assert rules and rules <= RACE_RULES, result.get("msg")
                outcomes.setdefault(name, []).append("refused")
            else:
                for f in result["files"]:
                    assert f["dest"].startswith(str(user.home) + "/")
                outcomes.setdefault(name, []).append("written")
        assert set(outcomes) == {name for name, *dummy in RACES}
        # Whatever the agent left is in the home: every file below it resolves to a place below it
        # (links are the racers' own).
        for _name, user, _layout, _race in layouts:
            for top, _dirs, files in os.walk(user.home):
                for entry in files:
                    p = os.path.join(top, entry)
                    if not os.path.islink(p):
                        assert os.path.realpath(p).startswith(str(user.home) + "/"), p
