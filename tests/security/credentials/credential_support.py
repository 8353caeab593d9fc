"""Shared parts of the credential security tests: the ansible-core versions, playbook runs, leak scans.

The lowest supported ansible-core (2.16) runs from a second virtual environment that `make test`
creates and names in BS_EXTRA_ANSIBLE_BINS. Under `make test` a missing 2.16 is a failure; a bare
`pytest` without it skips the 2.16 cases and says why.
"""
import base64
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.e2e import HOST_PYTHON, REPO, ansible_env, write_secret_vars

LOOKUP = "bootstrap_saas.provisioning.credential"
LOWEST = "2.16"
HIGHEST = "2.19"
PRIMARY_BIN = str(Path(sys.executable).parent)
DEFAULT_MIN_BIN = REPO / ".venv-core2.16" / "bin"


def core_version(bindir):
    out = subprocess.run([os.path.join(bindir, "ansible-playbook"), "--version"], capture_output=True, text=True,
                         timeout=60, check=False).stdout
    found = re.search(r"core ([0-9][0-9.]*)", out)
    return found.group(1) if found else None


def _lowest_core_bin():
    """(bindir, None) for ansible-core 2.16, or (None, why it is missing)."""
    listed = [p for p in os.environ.get("BS_EXTRA_ANSIBLE_BINS", "").split(os.pathsep) if p]
    candidates = listed or ([str(DEFAULT_MIN_BIN)] if DEFAULT_MIN_BIN.is_dir() else [])
    for bindir in candidates:
        if os.access(os.path.join(bindir, "ansible-playbook"), os.X_OK) and \
                (core_version(bindir) or "").startswith(LOWEST + "."):
            return bindir, None
    return None, "no ansible-playbook of ansible-core %s in %s" % (LOWEST, ", ".join(candidates) or "(none given)")


_CORES = {}


def cores():
    """{version: bindir} for the highest (.venv) and, when present, the lowest ansible-core."""
    if not _CORES:
        _CORES["highest"] = (PRIMARY_BIN, core_version(PRIMARY_BIN))
        _CORES["lowest"] = _lowest_core_bin()
    return _CORES


@pytest.fixture(params=["lowest", "highest"], ids=["ansible-core-" + LOWEST, "ansible-core-" + HIGHEST])
def core_bin(request):
    """The bin dir of the lowest or highest supported ansible-core; never a silent skip."""
    if request.param == "highest":
        bindir, version = cores()["highest"]
        assert version and version.startswith(HIGHEST + "."), \
            "the test venv must carry ansible-core %s.x (the highest on this Python), has %s" % (HIGHEST, version)
        return bindir
    bindir, why = cores()["lowest"]
    if bindir is None:
        message = ("ansible-core %s is required for this test: %s. `make test` installs it into %s "
                   "(make %s/.installed) and lists its bin dir in BS_EXTRA_ANSIBLE_BINS"
                   % (LOWEST, why, DEFAULT_MIN_BIN.parent.name, DEFAULT_MIN_BIN.parent.name))
        if os.environ.get("BS_EXTRA_ANSIBLE_BINS"):
            pytest.fail(message)
        pytest.skip(message)
    return bindir


def run_play(workdir, plays, variables, *args, bindir=PRIMARY_BIN, env=None, timeout=240):
    """A real ansible-playbook (from bindir) against this machine; secrets travel in a 0600 vars file."""
    workdir = Path(workdir)
    book = workdir / ("play-%s.yml" % secrets.token_hex(3))
    book.write_text(yaml.safe_dump(plays, sort_keys=False))
    varfile = write_secret_vars(workdir / ("vars-%s.json" % secrets.token_hex(3)), variables)
    environment = ansible_env(workdir)
    environment["PATH"] = bindir + os.pathsep + environment["PATH"]
    environment.pop("BOOTSTRAP_SAAS_USER_KEY", None)
    environment.update(env or {})
    cmd = [os.path.join(bindir, "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=%s" % HOST_PYTHON, "-e", "@%s" % varfile, str(book)] + list(args)
    try:
        return subprocess.run(cmd, env=environment, capture_output=True, text=True, timeout=timeout,
                              cwd=str(workdir), check=False)
    finally:
        varfile.unlink()


def local_play(tasks):
    return [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def lookup_expr(*terms, **options):
    """A credential lookup expression; option values are Jinja expressions (variable names)."""
    opts = "".join(", %s=%s" % (k, v) for k, v in options.items())
    return "{{ lookup('%s', %s%s) }}" % (LOOKUP, ", ".join("'%s'" % t for t in terms), opts)


def task_sections(output):
    """{task name: its part of the output} for every TASK banner."""
    sections = {}
    for part in re.split(r"^TASK \[", output, flags=re.M)[1:]:
        name, dummy, rest = part.partition("]")
        sections[name] = rest
    return sections


def failure_of(sections, name):
    section = sections[name]
    assert "FAILED!" in section, section[-3000:]
    # the failure is printed as JSON: undo the escaping of quotes so messages compare as written
    return section[section.index("FAILED!"):].replace('\\"', '"')


# --- leak scans -------------------------------------------------------------------------------

def secret_forms(label, secret):
    """The spellings a leaked secret could take: raw, hex, and base64 (both alphabets, every alignment)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    forms = {label: raw, label + " (hex)": raw.hex().encode()}
    for shift in range(3):
        chunk = raw[shift:]
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            # drop the edge characters, which depend on the neighbouring bytes
            forms["%s (%s, offset %d)" % (label, name, shift)] = encode(chunk).rstrip(b"=")[1:-4]
    return forms


def leaks_in_bytes(data, forms):
    return sorted(label for label, form in forms.items() if form and form in data)


def leaks_in_files(roots, forms, since, allowed=()):
    """[(path, form)] for regular files below roots, changed at or after `since`, that hold a form.

    A file older than the secret cannot hold it; the others are read whole, without following links.
    The walk stays on each root's filesystem: a proc or dev mount below /tmp (a container's root
    being built, say) holds no files of ours and has some that block on read.
    """
    allowed = {os.path.realpath(p) for p in allowed}
    found = []
    for root in roots:
        try:
            device = os.lstat(str(root)).st_dev
        except OSError:
            continue
        for dirpath, dirnames, filenames in os.walk(str(root)):
            dirnames[:] = [d for d in dirnames if _same_device(os.path.join(dirpath, d), device)]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                    if not (st.st_mode & 0o170000 == 0o100000) or st.st_dev != device or st.st_mtime < since \
                            or not 0 < st.st_size <= 256 << 20:
                        continue
                    if os.path.realpath(path) in allowed:
                        continue
                    with open(path, "rb") as handle:
                        data = handle.read()
                except OSError:
                    continue  # vanished or unreadable meanwhile (other processes use /tmp too)
                found += [(path, label) for label in leaks_in_bytes(data, forms)]
    return found


def _same_device(path, device):
    try:
        return os.lstat(path).st_dev == device
    except OSError:
        return False


def scan_started():
    # mtimes have coarse resolution on some filesystems; a second of margin errs on scanning more
    return time.time() - 1
