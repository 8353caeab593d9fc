"""Real parts for the path-security tests: a control plane that hands out one run per case, homes
prepared with a run and a profile, traps outside the home, and home_files run through ansible."""
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from pathlib import Path

from helpers.controlplane import ControlPlane
from helpers.e2e import REPO, ansible_env, run_playbook, snapshot, snapshot_diff

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient, ControlPlaneError)

HERE = Path(__file__).resolve().parent
CALLBACKS = REPO / "tests" / "functional" / "modules" / "callback_plugins"
PLAYBOOK = HERE / "home_files_loop.yml"
CP_USER = "alice"
SSH_KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\npaths-corpus-not-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
CREDENTIALS = {"ssh_key": SSH_KEY.decode()}
STATE = (".config", "bootstrap-saas")
# Written into every profile file, so that a write that escaped could be recognised anywhere.
CANARY = "bs-paths-canary-" + secrets.token_hex(4)
# Files that other accounts' creation (useradd, userdel) rewrites while the corpus runs, with their
# backups and lock files; a change there is accepted only if it does not carry the corpus canary.
ACCOUNT_FILES = re.compile(r"/etc/(\.pwd\.lock|(passwd|shadow|group|gshadow|subuid|subgid)([-+]|\.lock|\.\d+)?)\Z")


class PathsControlPlane:
    """The reference control plane; every case gets its own profile, token and run."""

    def __init__(self, workdir):
        self.cp = ControlPlane(Path(workdir) / "cp")
        self.cp.init()
        key = self.cp.new_user_key(Path(workdir) / "alice.key")
        self.cp.put_credential(CP_USER, "ssh_key", key, SSH_KEY)
        # Hundreds of cases come from one address within seconds; rate limiting is not under test.
        self.cp.start("--rate-limit", "0")
        self.ca_pem = self.cp.ca_path.read_text()
        self.client = ControlPlaneClient(self.cp.url, self.ca_pem, 30)

    def stop(self):
        self.cp.stop()

    def new_run(self, name, files):
        """(run.json, profile.json, stored_by_cp) for a profile with ``files``.

        A profile that the control plane stores goes the real way (PUT, mint, redeem) and the host
        keeps what the redeem answered. One that it refuses (a YAML integer mode, an unknown key)
        is what a hostile or older control plane could send: the run comes from a valid placeholder
        profile and the host keeps the hostile files, so that the collection's own checks are shown.
        """
        admin = self.cp.admin_key
        try:
            self.client.put("/v1/profiles/" + name, {"files": files}, bearer=admin)
            stored = True
        except ControlPlaneError as e:
            if e.status != 400:
                raise
            self.client.put("/v1/profiles/" + name, {"files": []}, bearer=admin)
            stored = False
        token = self.client.post("/v1/tokens", {"profile": name, "user": CP_USER}, bearer=admin)["token"]
        answer = self.client.post("/v1/tokens/redeem", {
            "token": token, "machine": {"id": "m-" + name, "hostname": "corpus-" + name},
            "machine_secret_hash": secrets.token_hex(32)})
        profile = answer["profile"]
        if not stored:
            profile = dict(profile, files=[as_stored(f) for f in files])
        run = {"url": self.cp.url, "ca_pem": self.ca_pem, "run_id": answer["run_id"],
               "run_token": answer["run_token"], "run_token_expires_at": answer.get("run_token_expires_at"),
               "fingerprint": hashlib.sha256(token.encode()).hexdigest(), "profile_name": profile.get("name"),
               "profile_version": profile.get("version"), "finished": False}
        return run, profile, stored

    def events(self, run_id):
        return [e for e in self.cp.audit() if e.get("run_id") == run_id]


def as_stored(entry):
    """A profile entry as the host keeps it: ``content`` becomes ``content_base64``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
        return entry
    out = {k: v for k, v in entry.items() if k != "content"}
    out["content_base64"] = base64.b64encode(entry["content"].encode()).decode()
    return out


def chown_user(path, pw):
    os.lchown(str(path), pw.pw_uid, pw.pw_gid)


def reset_home(user):
    """Empty the home and put the skeleton files back, all owned by the user."""
    home = user.home
    for name in os.listdir(home):
        p = home / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    os.chmod(home, 0o700)
    for name in os.listdir("/etc/skel"):
        src = Path("/etc/skel") / name
        if src.is_file() and not src.is_symlink():
            shutil.copyfile(src, home / name)
            chown_user(home / name, user.pw)


def install_state(user, run, profile):
    """What token_redeem leaves on the host: the state folder with run.json and profile.json."""
    d = user.home
    for part in STATE:
        d = d / part
        if not d.exists():
            d.mkdir(mode=0o700)
            chown_user(d, user.pw)
    for name, value in (("run.json", run), ("profile.json", profile)):
        p = d / name
        p.write_text(json.dumps(value))
        os.chmod(p, 0o600)
        chown_user(p, user.pw)


def contents(roots):
    """snapshot() plus the digest of every regular file: in-place writes show even at equal size."""
    snap = snapshot(roots)
    for path, value in list(snap.items()):
        if stat.S_ISREG(value[0]):
            try:
                with open(path, "rb") as f:
                    snap[path] = value + (hashlib.sha256(f.read()).hexdigest(),)
            except OSError:
                pass
    return snap


def directory_metadata(roots, skip=()):
    """Type, mode, owner and mtime of every directory below roots: an entry created, removed or
    renamed anywhere below them changes its directory's mtime (for the big trees /usr and /root,
    where a full snapshot per batch would take most of the time budget)."""
    seen = {}
    for root in roots:
        for top, dirs, _files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in skip]
            try:
                st = os.lstat(top)
            except FileNotFoundError:
                continue
            seen[top] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return seen


def escaped_writes(before, after, since_ns, uids):
    """Of the directories whose metadata changed between two ``directory_metadata`` snapshots, the
    entries made or changed since ``since_ns`` that belong to one of ``uids`` or carry the corpus
    canary. Everything the agent creates belongs to the target account (it writes with that
    identity) and every profile file carries the canary, so a write that escaped is one of these;
    what other processes on the machine do meanwhile is not."""
    found = []
    for path in sorted(p for p in after if before.get(p) != after[p]):
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_ctime_ns < since_ns:
                continue
            if st.st_uid in uids or (stat.S_ISREG(st.st_mode) and st.st_size < (1 << 20)
                                     and carries_canary(entry.path)):
                found.append(entry.path)
    return found


def loop_env(workdir):
    env = ansible_env(workdir)
    env.update({"ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS), "ANSIBLE_STDOUT_CALLBACK": "result_json",
                "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_PIPELINING": "1",
                "ANSIBLE_DEPRECATION_WARNINGS": "0", "ANSIBLE_LOCALHOST_WARNING": "0"})
    return env


def run_home_files(workdir, items, as_user=False, check=False, diff=False, extra=None):
    """home_files once per item ({"user": NAME, ...}) in one ansible-playbook run, as root
    for each user or (as_user) as each user through become; returns the item results in order."""
    variables = {"paths_items": items, "paths_as_user": as_user, "paths_credentials": CREDENTIALS}
    variables.update(extra or {})
    args = (["--check"] if check else []) + (["--diff"] if diff else [])
    proc = run_playbook(workdir, variables, *args, playbook=PLAYBOOK, env=loop_env(workdir), timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])["result"]
            return result.get("results", [result])
    raise AssertionError("no result from ansible-playbook (rc %d):\n%s%s"
                         % (proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))


def system_problems(before, after):
    diff = snapshot_diff(before, after)
    out = []
    for kind in ("added", "removed", "changed"):
        for path in diff[kind]:
            if ACCOUNT_FILES.match(path) and not carries_canary(path):
                continue
            if path == "/etc" and kind == "changed":
                continue    # its mtime follows the account files; every entry in it is compared itself
            out.append("%s outside the homes: %s" % (kind, path))
    return out


def carries_canary(path):
    try:
        with open(path, "rb") as f:
            return CANARY.encode() in f.read()
    except OSError:
        return False
