"""Real parts for end-to-end tests: throwaway local users, ansible-playbook runs, filesystem snapshots."""
import json
import os
import pwd
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The checkout in place when it already sits at ansible_collections/NAMESPACE/NAME (ansible-test's copy).
COLLECTIONS = REPO.parents[2] if REPO.parent.parent.name == "ansible_collections" else REPO / ".build" / "collections"
PLAYBOOK = REPO / "playbooks" / "provision.yml"
HOST_PYTHON = "/usr/bin/python3"  # a fresh host has only the system Python
SNAPSHOT_ROOTS = ("/etc", "/usr", "/opt", "/root")


class ThrowawayUser:
    """A real local account with an empty home, removed on exit."""

    def __init__(self, prefix="bs-e2e"):
        self.name = "%s-%s" % (prefix, secrets.token_hex(3))

    def __enter__(self):
        # useradd takes a lock on /etc/passwd; parallel test runs may hold it for a moment
        for attempt in range(20):
            done = subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", self.name],
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0:
                break
            if "lock" not in done.stderr or attempt == 19:
                raise RuntimeError("useradd %s failed: %s" % (self.name, done.stderr.strip()))
            time.sleep(0.25)
        self.pw = pwd.getpwnam(self.name)
        self.home = Path(self.pw.pw_dir)
        return self

    def __exit__(self, *exc):
        for dummy in range(20):
            done = subprocess.run(["userdel", "--remove", self.name], capture_output=True, text=True, check=False)
            if done.returncode == 0 or "lock" not in done.stderr:
                return
            time.sleep(0.25)


def ansible_env(workdir):
    """Environment for ansible-playbook that keeps Ansible's own files out of the snapshots."""
    env = dict(os.environ)
    home = Path(workdir) / "ansible-home"
    home.mkdir(parents=True, exist_ok=True)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    })
    return env


def write_secret_vars(path, values):
    """Secrets reach ansible-playbook through a 0600 file, never the command line."""
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)
    return path


def run_playbook(workdir, variables, *args, playbook=PLAYBOOK, env=None, timeout=300, capture=True):
    """Run the real ansible-playbook against this machine as the new host; returns the process."""
    workdir = Path(workdir)
    varfile = write_secret_vars(workdir / ("vars-%s.json" % secrets.token_hex(4)), variables)
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i", "localhost,", "-c", "local",
        "-e", "ansible_python_interpreter=%s" % HOST_PYTHON,
        "-e", "@%s" % varfile,
        str(playbook),
    ] + list(args)
    try:
        return subprocess.run(cmd, env=env or ansible_env(workdir), capture_output=capture, text=True,
                              timeout=timeout, cwd=str(workdir), check=False)
    finally:
        varfile.unlink()


def snapshot(roots):
    """Every entry below roots with its mode and owner, and for files size, mtime and inode: any write shows up."""
    seen = {}

    def walk(path):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            # the inode catches a file replaced by rename even when size and mtime were kept
            seen[path] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, st.st_ino)
            return
        # A directory's own mtime moves with any entry added or removed, which the listing
        # already shows one by one; leaving it out keeps unrelated activity from hiding in it.
        seen[path] = (st.st_mode, st.st_uid)
        try:
            names = os.listdir(path)
        except OSError:
            return
        for name in names:
            walk(os.path.join(path, name))

    for root in roots:
        walk(str(root))
    return seen


def snapshot_diff(before, after):
    """Paths added, removed or changed between two snapshots."""
    changed = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    return {"added": sorted(after.keys() - before.keys()),
            "removed": sorted(before.keys() - after.keys()),
            "changed": changed}


def tree(home):
    """{relative path: (octal mode, owner)} of every entry below a home directory."""
    home = Path(home)
    out = {}
    for p in sorted(home.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(home))] = ("%04o" % stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name)
    return out
