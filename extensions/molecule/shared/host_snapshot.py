"""Snapshot a container's whole filesystem from outside (podman exec), and compare two snapshots.

    host_snapshot.py take CONTAINER OUT.json
    host_snapshot.py diff CONTAINER BEFORE.json      -> {"added": [...], "removed": [...], "changed": [...]}

The walk is the test suite's own `snapshot` (tests/helpers/e2e.py), sent to the container's Python;
it looks from outside so that taking a snapshot leaves no trace and needs no login. Kernel and
runtime filesystems (/proc, /sys, /dev, /run) are not the host's files and are left out.
"""
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
from helpers.e2e import snapshot, snapshot_diff  # noqa: E402

NOT_FILES = ("proc", "sys", "dev", "run")
WALK = inspect.getsource(snapshot) + """
import json, os, stat, sys
roots = sorted("/" + n for n in os.listdir("/") if n not in %r)
json.dump(snapshot(roots), sys.stdout)
""" % (NOT_FILES,)


def take(container):
    done = subprocess.run(["podman", "exec", container, "/usr/bin/python3", "-c", "import os, stat\n" + WALK],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit("snapshot of %s failed: %s" % (container, done.stderr.strip()))
    # JSON turns the walker's tuples into lists; compare like with like
    return {path: tuple(entry) for path, entry in json.loads(done.stdout).items()}


def main(argv):
    if len(argv) != 3 or argv[0] not in ("take", "diff"):
        raise SystemExit(__doc__)
    verb, container, path = argv
    current = take(container)
    if verb == "take":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(current, f)
        print("%d entries" % len(current))
    else:
        with open(path) as f:
            before = {p: tuple(e) for p, e in json.load(f).items()}
        json.dump(snapshot_diff(before, current), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
