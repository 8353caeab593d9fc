"""The safe writer on a real filesystem, as root for a real throwaway user (and as that user).

Needs root (useradd/userdel); skipped otherwise.
"""
import os
import pickle
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils import _safe_write
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._safe_write import (
    AccountRefused,
    HomeWriter,
    WriteRefused,
    resolve_account,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create throwaway users")


def _account_tool(*argv):
    """useradd/userdel, retried briefly: a parallel test run may hold the passwd lock."""
    for _attempt in range(20):
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if done.returncode == 0 or b"lock" not in done.stderr:
            return done
        time.sleep(0.1)
    return done


def _remove_user(name, home):
    # rmtree never follows symlinks, so planted links cannot take anything outside with them.
    if home and os.path.isdir(home) and not os.path.islink(home):
        shutil.rmtree(home, ignore_errors=True)
    _account_tool("userdel", "-r", name)


@pytest.fixture
def account():
    name = "bs-t-" + secrets.token_hex(4)
    assert _account_tool("useradd", "-m", "-s", "/bin/sh", name).returncode == 0
    entry = pwd.getpwnam(name)
    try:
        yield resolve_account(name)
    finally:
        _remove_user(name, entry.pw_dir)


@pytest.fixture
def writer(account):
    with HomeWriter(account) as w:
        yield w


@pytest.fixture
def trap():
    """A root-owned directory standing in for /root/.ssh or /etc: must never change."""
    d = tempfile.mkdtemp(prefix="bs-trap-")
    with open(os.path.join(d, "authorized_keys"), "w") as f:
        f.write("root's key\n")
    os.chmod(os.path.join(d, "authorized_keys"), 0o600)
    yield d
    shutil.rmtree(d)


def snapshot(top):
    """Everything about a tree that a write could change."""
    result = {}
    for root, dirs, files in os.walk(top):
        for name in dirs + files + [""]:
            p = os.path.join(root, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                value = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    value = ("file", f.read())
            else:
                value = ("other",)
            result[os.path.relpath(p, top)] = value + (st.st_mode, st.st_uid, st.st_gid, st.st_ino)
    return result


def home_path(account, *parts):
    return os.path.join(account.pw_dir, *parts)


def temp_leftovers(top):
    return [os.path.join(r, n) for r, _d, files in os.walk(top) for n in files if n.startswith(".bs-tmp-")]


def assert_identity_restored():
    assert (os.geteuid(), os.getegid()) == (0, 0)
    assert os.getgroups() == ROOT_GROUPS


ROOT_GROUPS = os.getgroups()


# writing ----------------------------------------------------------------------------------------

def test_write_creates_file_and_parents_owned_by_user(account, writer):
    assert writer.write((".ssh", "config.d", "work"), b"Host x\n", 0o600) is True
    for parts, mode in [((".ssh",), 0o700), ((".ssh", "config.d"), 0o700), ((".ssh", "config.d", "work"), 0o600)]:
        st = os.lstat(home_path(account, *parts))
        assert (st.st_uid, st.st_gid) == (account.pw_uid, account.pw_gid)
        assert stat.S_IMODE(st.st_mode) == mode
    with open(home_path(account, ".ssh", "config.d", "work"), "rb") as f:
        assert f.read() == b"Host x\n"
    assert writer.write((".local", "bin", "tool"), b"#!/bin/sh\n", 0o755) is True
    assert stat.S_IMODE(os.stat(home_path(account, ".local", "bin", "tool")).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(home_path(account, ".local")).st_mode) == 0o700
    assert temp_leftovers(account.pw_dir) == []
    assert_identity_restored()


def test_write_is_idempotent(account, writer):
    parts = (".zshrc",)
    assert writer.write(parts, b"export A=1\n", 0o644) is True
    before = os.stat(home_path(account, ".zshrc"))
    assert writer.write(parts, b"export A=1\n", 0o644) is False
    after = os.stat(home_path(account, ".zshrc"))
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert writer.write(parts, b"export A=2\n", 0o644) is True
    assert writer.write(parts, b"export A=2\n", 0o600) is True
    assert writer.file_state(parts) == (b"export A=2\n", 0o600)
    assert writer.read(parts) == b"export A=2\n"


def test_write_replaces_a_root_owned_file_and_leaves_it_owned_by_user(account, writer):
    p = home_path(account, ".bashrc")
    if os.path.lexists(p):
        os.unlink(p)
    with open(p, "wb") as f:
        f.write(b"same\n")
    os.chmod(p, 0o644)
    assert os.stat(p).st_uid == 0
    assert writer.write((".bashrc",), b"same\n", 0o644) is True
    assert os.stat(p).st_uid == account.pw_uid


def test_existing_dirs_keep_their_mode_but_ssh_is_forced_0700(account, writer):
    os.mkdir(home_path(account, ".config"), 0o755)
    os.chown(home_path(account, ".config"), account.pw_uid, account.pw_gid)
    os.mkdir(home_path(account, ".ssh"), 0o755)
    os.chown(home_path(account, ".ssh"), account.pw_uid, account.pw_gid)
    os.chmod(home_path(account, ".ssh"), 0o755)
    writer.write((".config", "git", "config"), b"[user]\n", 0o644)
    writer.write((".ssh", "known_hosts"), b"", 0o644)
    assert stat.S_IMODE(os.stat(home_path(account, ".config")).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(home_path(account, ".config", "git")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home_path(account, ".ssh")).st_mode) == 0o700


def test_kernel_enforces_the_users_rights(account, writer):
    # A root-owned ~/.ssh the user cannot write: dropping to the user's identity makes it fail.
    os.mkdir(home_path(account, ".ssh"), 0o755)
    with pytest.raises(WriteRefused) as info:
        writer.write((".ssh", "authorized_keys"), b"ssh-ed25519 AAAA\n", 0o600)
    assert (info.value.rule, info.value.path) == ("permission", "~/.ssh")
    assert "cannot set mode 0700 on ~/.ssh" in str(info.value)
    assert os.listdir(home_path(account, ".ssh")) == []
    os.mkdir(home_path(account, ".config"), 0o755)
    with pytest.raises(WriteRefused) as info:
        writer.write((".config", "x"), b"x", 0o600)
    assert (info.value.rule, info.value.path) == ("permission", "~/.config/x")
    assert "cannot create a file in ~/.config" in str(info.value)
    assert os.listdir(home_path(account, ".config")) == []
    assert_identity_restored()


# planted symlinks and other things --------------------------------------------------------------

def test_ssh_dir_symlink_to_root_dir(account, writer, trap):
    os.symlink(trap, home_path(account, ".ssh"))
    before = snapshot(trap)
    with pytest.raises(WriteRefused) as info:
        writer.write((".ssh", "authorized_keys"), b"attacker key\n", 0o600)
    assert info.value.rule == "symlink"
    assert info.value.path == "~/.ssh"
    assert trap in str(info.value)
    with pytest.raises(WriteRefused):
        writer.read((".ssh", "authorized_keys"))
    with pytest.raises(WriteRefused):
        writer.append_durable((".ssh", "authorized_keys"), b"x\n")
    with pytest.raises(WriteRefused):
        writer.remove((".ssh", "authorized_keys"))
    assert snapshot(trap) == before
    assert os.readlink(home_path(account, ".ssh")) == trap
    assert_identity_restored()


def test_authorized_keys_symlink_to_root_file(account, writer, trap):
    writer.ensure_dir((".ssh",))
    target = os.path.join(trap, "authorized_keys")
    os.symlink(target, home_path(account, ".ssh", "authorized_keys"))
    before = snapshot(trap)
    for operation in (lambda: writer.write((".ssh", "authorized_keys"), b"attacker\n", 0o600),
                      lambda: writer.read((".ssh", "authorized_keys")),
                      lambda: writer.file_state((".ssh", "authorized_keys")),
                      lambda: writer.append_durable((".ssh", "authorized_keys"), b"attacker\n"),
                      lambda: writer.remove((".ssh", "authorized_keys"))):
        with pytest.raises(WriteRefused) as info:
            operation()
        assert info.value.rule == "symlink"
        assert info.value.path == "~/.ssh/authorized_keys"
    assert snapshot(trap) == before
    assert os.readlink(home_path(account, ".ssh", "authorized_keys")) == target
    assert temp_leftovers(account.pw_dir) == []


def test_dangling_symlink_is_not_created_through(account, writer):
    writer.ensure_dir((".ssh",))
    target = "/tmp/x-nonexistent-" + secrets.token_hex(6)
    os.symlink(target, home_path(account, ".ssh", "id_ed25519"))
    with pytest.raises(WriteRefused) as info:
        writer.write((".ssh", "id_ed25519"), b"PRIVATE\n", 0o600)
    assert info.value.rule == "symlink"
    with pytest.raises(WriteRefused):
        writer.append_durable((".ssh", "id_ed25519"), b"PRIVATE\n")
    assert not os.path.lexists(target)
    assert temp_leftovers(account.pw_dir) == []


def test_config_symlink_covers_agent_state_too(account, writer, trap):
    os.symlink(trap, home_path(account, ".config"))
    before = snapshot(trap)
    with pytest.raises(WriteRefused) as info:
        writer.write((".config", "git", "config"), b"x", 0o644)
    assert (info.value.rule, info.value.path) == ("symlink", "~/.config")
    with pytest.raises(WriteRefused):
        writer.ensure_dir((".config", "bootstrap-saas"))
    with pytest.raises(WriteRefused):
        writer.write((".config", "bootstrap-saas", "machine-secret"), b"00" * 32, 0o600)
    with pytest.raises(WriteRefused):
        writer.append_durable((".config", "bootstrap-saas", "spool.jsonl"), b"{}\n")
    assert snapshot(trap) == before


def test_symlink_deeper_in_the_path(account, writer, trap):
    writer.ensure_dir((".local",))
    os.symlink(trap, home_path(account, ".local", "bin"))
    before = snapshot(trap)
    with pytest.raises(WriteRefused) as info:
        writer.write((".local", "bin", "tool"), b"#!/bin/sh\n", 0o755)
    assert (info.value.rule, info.value.path) == ("symlink", "~/.local/bin")
    assert snapshot(trap) == before


def test_directory_at_destination(account, writer):
    os.makedirs(home_path(account, ".ssh", "config", "inner"))
    for p in (".ssh", ".ssh/config", ".ssh/config/inner"):
        os.chown(home_path(account, p), account.pw_uid, account.pw_gid)
    before = snapshot(account.pw_dir)
    with pytest.raises(WriteRefused) as info:
        writer.write((".ssh", "config"), b"Host *\n", 0o600)
    assert (info.value.rule, info.value.path) == ("not-a-file", "~/.ssh/config")
    with pytest.raises(WriteRefused):
        writer.remove((".ssh", "config"))
    with pytest.raises(WriteRefused):
        writer.read((".ssh", "config"))
    after = snapshot(account.pw_dir)
    # only ~/.ssh's mode may change (forced 0700); nothing else
    before.pop(".ssh"), after.pop(".ssh")
    assert after == before


def test_file_where_a_directory_is_needed(account, writer):
    with open(home_path(account, ".config"), "w") as f:
        f.write("not a dir")
    with pytest.raises(WriteRefused) as info:
        writer.write((".config", "x"), b"x", 0o644)
    assert (info.value.rule, info.value.path) == ("not-a-directory", "~/.config")


def test_fifo_at_destination_does_not_block(account, writer):
    writer.ensure_dir((".config",))
    os.mkfifo(home_path(account, ".config", "pipe"))
    for operation in (lambda: writer.read((".config", "pipe")),
                      lambda: writer.write((".config", "pipe"), b"x", 0o600),
                      lambda: writer.append_durable((".config", "pipe"), b"x")):
        with pytest.raises(WriteRefused) as info:
            operation()
        assert info.value.rule == "not-a-file"


def test_planted_temp_name_is_never_opened(account, writer, trap, monkeypatch):
    writer.ensure_dir((".ssh",))
    planted = ".bs-tmp-planted"
    os.symlink(os.path.join(trap, "authorized_keys"), home_path(account, ".ssh", planted))
    names = iter([planted])
    real = _safe_write._temp_name
    monkeypatch.setattr(_safe_write, "_temp_name", lambda: next(names, None) or real())
    before = snapshot(trap)
    assert writer.write((".ssh", "authorized_keys"), b"good key\n", 0o600) is True
    assert snapshot(trap) == before
    assert os.path.islink(home_path(account, ".ssh", planted))
    with open(home_path(account, ".ssh", "authorized_keys"), "rb") as f:
        assert f.read() == b"good key\n"


def _fsync_spy(monkeypatch):
    """Records what each real fsync was called on: ("dir" or "file", inode)."""
    synced, real = [], os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        synced.append(("dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino))
        real(fd)
    monkeypatch.setattr(_safe_write.os, "fsync", fsync)
    return synced


def test_deferred_dir_sync_syncs_each_directory_once_at_the_end(account, writer, monkeypatch):
    synced = _fsync_spy(monkeypatch)
    config_made = not os.path.exists(home_path(account, ".config"))
    names = ["f%02d" % i for i in range(20)]
    with writer.deferred_dir_sync():
        for name in names:
            assert writer.write((".config", "many", name), name.encode(), 0o644) is True
        assert writer.remove((".config", "many", "f00")) is True
        files_before_end = [s for s in synced if s[0] == "file"]
        dirs_before_end = [s for s in synced if s[0] == "dir"]
    many = os.stat(home_path(account, ".config", "many")).st_ino
    config = os.stat(home_path(account, ".config")).st_ino
    home = os.stat(account.pw_dir).st_ino
    # Every file's data before its rename; each directory that changed (the parent of each one made,
    # and the one renamed into) once, and only when the block ends.
    assert len(files_before_end) == len(names)
    assert dirs_before_end == []
    expected = [config, many] + ([home] if config_made else [])
    assert sorted(s[1] for s in synced if s[0] == "dir") == sorted(expected)
    assert sorted(os.listdir(home_path(account, ".config", "many"))) == names[1:]
    # Outside the block every rename is synced at once, as before.
    del synced[:]
    writer.write((".config", "many", "f01"), b"new", 0o644)
    assert synced == [("file", os.stat(home_path(account, ".config", "many", "f01")).st_ino), ("dir", many)]


def test_deferred_dir_sync_still_syncs_when_the_block_fails(account, writer, monkeypatch):
    synced = _fsync_spy(monkeypatch)
    with pytest.raises(WriteRefused) as info:
        with writer.deferred_dir_sync():
            writer.write((".config", "a", "one"), b"1", 0o644)
            writer.write((".config", "a", "one", "below-a-file"), b"2", 0o644)
    assert info.value.rule == "not-a-directory"
    assert ("dir", os.stat(home_path(account, ".config", "a")).st_ino) in synced
    assert writer.read((".config", "a", "one")) == b"1"
    assert writer._unsynced_dirs is None


def test_failed_write_leaves_old_content_and_no_temp_file(account, writer):
    # A real ENOSPC: a tiny tmpfs mounted on ~/.config/small.
    writer.write((".config", "small", "f"), b"old", 0o600)
    mnt = home_path(account, ".config", "small")
    shutil.rmtree(mnt)
    os.mkdir(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,uid=%d,mode=0700" % account.pw_uid,
                       "tmpfs", mnt], stderr=subprocess.DEVNULL, check=False).returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    try:
        writer.write((".config", "small", "f"), b"old", 0o600)
        with pytest.raises(WriteRefused) as info:
            writer.write((".config", "small", "f"), b"x" * (1 << 20), 0o600)
        assert info.value.rule == "os-error"
        assert os.listdir(mnt) == ["f"]
        assert writer.read((".config", "small", "f")) == b"old"
        assert_identity_restored()
    finally:
        subprocess.run(["umount", mnt], check=True)


def test_symlink_swap_race(account, writer, trap):
    """A second process, as the user, keeps swapping ~/.ssh for a link to the trap."""
    writer.ensure_dir((".ssh",))
    before = snapshot(trap)
    ssh, aside = home_path(account, ".ssh"), home_path(account, ".ssh-aside")
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                os.rename(ssh, aside)
                os.symlink(trap, ssh)
                os.unlink(ssh)
                os.rename(aside, ssh)
        finally:
            os._exit(0)
    outcomes = {"written": 0, "refused": 0}
    try:
        deadline = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < deadline:
            i += 1
            try:
                writer.write((".ssh", "authorized_keys"), b"key %d\n" % i, 0o600)
                outcomes["written"] += 1
            except WriteRefused as e:
                assert e.rule in ("symlink", "changed", "os-error"), e
                outcomes["refused"] += 1
    finally:
        os.waitpid(pid, 0)
    assert snapshot(trap) == before
    assert outcomes["written"] > 0
    assert_identity_restored()


# append, remove, directories, state -------------------------------------------------------------

def test_append_durable(account, writer):
    parts = (".config", "bootstrap-saas", "spool.jsonl")
    writer.ensure_dir(parts[:2])
    writer.append_durable(parts, b'{"a":1}\n')
    writer.append_durable(parts, b'{"b":2}\n')
    st = os.stat(home_path(account, *parts))
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, account.pw_uid)
    assert writer.read(parts) == b'{"a":1}\n{"b":2}\n'
    d = os.stat(home_path(account, *parts[:2]))
    assert (stat.S_IMODE(d.st_mode), d.st_uid) == (0o700, account.pw_uid)


def test_ensure_dir_forces_its_mode(account, writer):
    os.mkdir(home_path(account, ".config"), 0o755)
    os.chown(home_path(account, ".config"), account.pw_uid, account.pw_gid)
    os.mkdir(home_path(account, ".config", "bootstrap-saas"), 0o755)
    os.chown(home_path(account, ".config", "bootstrap-saas"), account.pw_uid, account.pw_gid)
    writer.ensure_dir((".config", "bootstrap-saas"))
    assert stat.S_IMODE(os.stat(home_path(account, ".config", "bootstrap-saas")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home_path(account, ".config")).st_mode) == 0o755


def test_remove(account, writer):
    assert writer.remove((".zshrc",)) is False
    assert writer.remove((".config", "missing", "x")) is False
    writer.write((".zshrc",), b"x", 0o600)
    assert writer.remove((".zshrc",)) is True
    assert not os.path.lexists(home_path(account, ".zshrc"))


def test_read_missing(writer):
    assert writer.read((".ssh", "config")) is None
    assert writer.file_state((".config", "a", "b")) is None


@pytest.mark.parametrize("parts", [(".profile",), (".ssh",), ("..", "x"), (".config", "..", "x"),
                                   (".config", "a/b"), (".config", ""), ()])
def test_writer_stays_within_the_allowlist(account, writer, parts):
    with pytest.raises(WriteRefused):
        writer.write(parts, b"x", 0o600)
    assert sorted(os.listdir(account.pw_dir)) == sorted(os.listdir("/etc/skel"))


@pytest.mark.parametrize("mode", [0o4755, 0o2700, 0o1600, 0o666, 0o620, -1, "0600", True])
def test_writer_refuses_dangerous_modes(writer, mode):
    with pytest.raises(WriteRefused) as info:
        writer.write((".zshrc",), b"x", mode)
    assert info.value.rule == "mode"


# running as the user directly -------------------------------------------------------------------

def run_as(account, function):
    """Run ``function(writer)`` in a child process that has become the user for good."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            with HomeWriter(resolve_account(account.pw_name)) as writer:
                result = ("ok", function(writer))
        except Exception as e:  # reported to the parent
            result = ("error", type(e).__name__, getattr(e, "rule", None), str(e))
        os.write(w, pickle.dumps(result))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


def test_as_the_user_directly(account, trap):
    assert run_as(account, lambda w: w.write((".ssh", "config"), b"Host *\n", 0o644)) == ("ok", True)
    assert run_as(account, lambda w: w.write((".ssh", "config"), b"Host *\n", 0o644)) == ("ok", False)
    st = os.stat(home_path(account, ".ssh", "config"))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (account.pw_uid, 0o644)
    os.symlink(trap, home_path(account, ".config"))
    before = snapshot(trap)
    result = run_as(account, lambda w: w.write((".config", "x"), b"x", 0o600))
    assert result[:3] == ("error", "WriteRefused", "symlink")
    assert snapshot(trap) == before


def test_another_user_needs_root(account):
    root = pwd.getpwnam("root")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            HomeWriter(root)
        except AccountRefused as e:
            code = 0 if e.rule == "needs-root" else 2
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0


# accounts ---------------------------------------------------------------------------------------

def test_resolve_account_ordinary(account):
    again = resolve_account(account.pw_name)
    assert again.pw_dir == account.pw_dir and again.pw_uid >= 1000


@pytest.mark.parametrize("user,rule", [
    ("root", "root-account"),
    ("daemon", "system-account"),
    ("nobody", "system-account"),
    ("bs-t-no-such-user", "unknown-user"),
    ("", "unknown-user"),
    (None, "unknown-user"),
])
def test_resolve_account_refuses(user, rule):
    with pytest.raises(AccountRefused) as info:
        resolve_account(user)
    assert info.value.rule == rule
    assert rule in str(info.value)


def test_resolve_account_allow_system_user():
    assert resolve_account("root", allow_system_user=True).pw_uid == 0


def test_uid_min_from_login_defs(account, tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("# comment\nUID_MIN\t\t\t %d\nUID_MAX 60000\n" % (account.pw_uid + 1))
    with pytest.raises(AccountRefused) as info:
        resolve_account(account.pw_name, login_defs=str(defs))
    assert info.value.rule == "system-account"
    assert _safe_write.uid_min(str(tmp_path / "missing")) == 1000
    defs.write_text("UID_MIN 500\n")
    assert _safe_write.uid_min(str(defs)) == 500


def _user_with_home(home):
    name = "bs-t-" + secrets.token_hex(4)
    assert _account_tool("useradd", "-M", "-d", home, name).returncode == 0
    return name


@pytest.mark.parametrize("layout,rule", [
    ("symlink", "home-symlink"),
    ("missing", "home-missing"),
    ("file", "home-not-directory"),
    ("root-owned", "home-owner"),
])
def test_resolve_account_home_checks(tmp_path, layout, rule):
    home = str(tmp_path / "home")
    if layout == "symlink":
        os.mkdir(str(tmp_path / "real"))
        os.symlink(str(tmp_path / "real"), home)
    elif layout == "file":
        open(home, "w").close()
    elif layout == "root-owned":
        os.mkdir(home)
    name = _user_with_home(home)
    try:
        if layout == "symlink":
            os.chown(str(tmp_path / "real"), pwd.getpwnam(name).pw_uid, -1)
        with pytest.raises(AccountRefused) as info:
            resolve_account(name)
        assert info.value.rule == rule
    finally:
        _account_tool("userdel", name)


def test_home_is_opened_without_following_a_link(account, tmp_path):
    # The home turning into a link after resolve_account: HomeWriter refuses to open it.
    real = account.pw_dir + ".real"
    os.rename(account.pw_dir, real)
    os.symlink(real, account.pw_dir)
    try:
        with pytest.raises(WriteRefused) as info:
            HomeWriter(account)
        assert info.value.rule == "symlink"
    finally:
        os.unlink(account.pw_dir)
        os.rename(real, account.pw_dir)


def test_errors_name_the_user_not_a_secret():
    e = AccountRefused("alice", "system-account", "uid 5")
    assert str(e) == "account 'alice' refused (system-account): uid 5"
    w = WriteRefused("~/.ssh", "symlink", "link")
    assert (w.path, w.rule, w.message) == ("~/.ssh", "symlink", "link")
