"""The reference control plane of one molecule scenario, run on the controller.

    controlplane.py up STATE_DIR [PROFILE=MANIFEST.yml ...]   start it (once; reused while it runs)
    controlplane.py mint STATE_DIR PROFILE HOST...            one token per host, in STATE_DIR/tokens/HOST
    controlplane.py down STATE_DIR                            stop it

`up` builds the test suite's own stack (tests/helpers/stack.py): a fresh data directory, the user
key of control-plane user alice, her SSH key stored as an encrypted credential and the sample
profile `dev`, served over HTTPS on a free loopback port. Extra profiles come from YAML files.
STATE_DIR/state.json then tells the playbooks the URL, the CA, the user key file and the SHA-256 of
the SSH key (never the key). Tokens are files of mode 0600 that only the controller reads.
"""
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
import conftest  # noqa: E402,F401  (links the checkout as the collection, as the tests do) pylint: disable=unused-import
from helpers.controlplane import STOP_TIMEOUT, ControlPlane  # noqa: E402
from helpers.stack import CP_USER, Stack  # noqa: E402


def write_private(path, text):
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def serving_pid(state_dir):
    """The pid of this scenario's running `bs-controlplane serve`, or None."""
    try:
        pid = json.loads((state_dir / "cp" / "server.json").read_text())["pid"]
        cmdline = Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0")
    except (OSError, ValueError, KeyError):
        return None
    data_dir = str(state_dir / "cp").encode()
    return pid if b"serve" in cmdline and data_dir in cmdline else None


def up(state_dir, profiles):
    if serving_pid(state_dir):
        print("control plane already running: %s" % json.loads((state_dir / "state.json").read_text())["url"])
        return 0
    shutil.rmtree(str(state_dir), ignore_errors=True)
    state_dir.mkdir(mode=0o700, parents=True)
    stack = Stack(state_dir)
    for spec in profiles:
        name, dummy, manifest = spec.partition("=")
        stack.cp.set_profile(name, yaml.safe_load(Path(manifest).read_text()))
    state = {
        "url": stack.cp.url,
        "ca_path": str(stack.cp.ca_path),
        "data_dir": str(stack.cp.data_dir),
        "user_key_file": str(stack.user_key_file),
        "cp_user": CP_USER,
        "ssh_key_sha256": hashlib.sha256(stack.ssh_key).hexdigest(),
    }
    write_private(state_dir / "state.json", json.dumps(state, indent=2))
    # The server outlives this process: converge, idempotence and verify use it; `down` stops it.
    print("control plane running: %s (pid %d)" % (stack.cp.url, stack.cp.process.pid))
    return 0


def mint(state_dir, profile, hosts):
    cp = ControlPlane(state_dir / "cp")
    for host in hosts:
        write_private(state_dir / "tokens" / host, cp.mint(profile, CP_USER))
    print("minted %d token(s) for profile %s" % (len(hosts), profile))
    return 0


def down(state_dir):
    pid = serving_pid(state_dir)
    if pid is None:
        print("no control plane running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while serving_pid(state_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    if serving_pid(state_dir):
        os.kill(pid, signal.SIGKILL)
    print("control plane stopped")
    return 0


def main(argv):
    if len(argv) < 2 or argv[0] not in ("up", "mint", "down"):
        raise SystemExit(__doc__)
    state_dir = Path(argv[1])
    if argv[0] == "up":
        return up(state_dir, argv[2:])
    if argv[0] == "mint":
        if len(argv) < 4:
            raise SystemExit(__doc__)
        return mint(state_dir, argv[2], argv[3:])
    return down(state_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
