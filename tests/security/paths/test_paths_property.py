"""Property: for generated profile paths and generated home layouts (symlinks to traps, dangling
links, links inside the home, files and fifos where directories are expected, ...), every write
lands at an allowlisted real location of the target home, or the profile is refused and nothing
changes. Runs home_files' own validation, inspection and writing in process, as root for a real
throwaway account (with the writer's privilege drop), on the real filesystem."""
import base64
import os
import shutil
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from helpers.e2e import ThrowawayUser, snapshot_diff
from paths_corpus import make_traps
from paths_support import chown_user, contents

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._allowlist import (
    ALLOWED_DIRS, in_fixed_allowlist)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._safe_write import (
    HomeWriter, WriteRefused, resolve_account)
from ansible_collections.bootstrap_saas.provisioning.plugins.modules import home_files

COMPONENTS = [".config", ".ssh", ".local", "bin", ".zshrc", ".bashrc", "bootstrap-saas", "git", "config",
              "authorized_keys", "x", "..", ".", "", ".SSH", "~", "$HOME", "etc", "\u0455sh", "a b", ".bs-tmp-1",
              "binx", ".ssh2"]
PREFIXES = ["~/", "~/", "~/", "/", "~root/", "", "$HOME/", "~/./"]
POSITIONS = [".ssh", ".ssh/authorized_keys", ".ssh/config", ".config", ".config/git", ".config/git/config",
             ".config/x", ".local", ".local/bin", ".local/bin/x", ".zshrc", ".bashrc", "dotfiles"]
# Links to a directory anyone may write to come up most: that is where a followed link would show.
KINDS = ["link-open-dir"] * 4 + ["link-trap-dir", "link-trap-file", "link-dangling", "link-inside", "link-inside",
                                 "dir", "file", "fifo"]

# Mostly paths the allowlist admits (so that the layouts are what decides), the rest anything.
admitted = st.one_of(st.sampled_from(["~/.zshrc", "~/.bashrc"]),
                     st.builds(lambda d, n: d + n, st.sampled_from(["~/.ssh/", "~/.config/", "~/.config/git/",
                                                                    "~/.local/bin/"]),
                               st.sampled_from(["config", "authorized_keys", "x"])))
anything = st.builds(lambda prefix, parts: prefix + "/".join(parts), st.sampled_from(PREFIXES),
                     st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=4))
paths = st.one_of(admitted, admitted, anything)
entries = st.fixed_dictionaries(
    {"path": paths, "mode": st.sampled_from(["0644", "0600", "0755"]),
     "content_base64": st.sampled_from([base64.b64encode(b"x\n").decode(), base64.b64encode(b"y\n").decode()])},
    optional={"manage": st.sampled_from(["file", "block"]), "replace_symlink": st.booleans(),
              "state": st.sampled_from(["present", "absent"])})


def positions_for(raw):
    """Where to plant things: every level of the generated paths (the fixed positions if none)."""
    found = set()
    for entry in raw:
        path = entry["path"]
        if path.startswith("~/") and "\x00" not in path:
            parts = [p for p in path[2:].split("/") if p not in ("", ".", "..")]
            found.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return sorted(found) or POSITIONS


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    trap = Path("/tmp") / ("bs-trap-prop-%s" % os.getpid())
    with ThrowawayUser(prefix="bs-pp") as user:
        try:
            yield user, trap
        finally:
            shutil.rmtree(trap, ignore_errors=True)


def plant(user, trap, layout):
    """Plant each item unless something already sits there or a parent is not a real directory."""
    home = user.home
    for rel, kind in layout:
        p = home / rel
        parents = [home.joinpath(*Path(rel).parts[:i]) for i in range(1, len(Path(rel).parts))]
        if os.path.lexists(p) or any(os.path.islink(d) or not d.is_dir() for d in parents if os.path.lexists(d)):
            continue
        for d in parents:
            if not os.path.lexists(d):
                d.mkdir(mode=0o700)
                chown_user(d, user.pw)
        target = {"link-trap-dir": trap / "etc", "link-open-dir": trap / "open",
                  "link-trap-file": trap / "etc" / "passwd", "link-dangling": trap / "etc" / "cron.d" / "x",
                  "link-inside": home / "dotfiles"}.get(kind)
        if target is not None:
            os.symlink(str(target), str(p))
        elif kind == "dir":
            p.mkdir(mode=0o700)
        elif kind == "file":
            p.write_bytes(b"planted\n")
        else:
            os.mkfifo(p)
        chown_user(p, user.pw)


def allowed_location(rel):
    """A file the allowlist admits, the agent's backups, or a directory on the way to them."""
    parts = tuple(Path(rel).parts)
    return in_fixed_allowlist(parts) or any(d[:len(parts)] == parts for d in ALLOWED_DIRS)


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=st.lists(entries, min_size=1, max_size=2), data=st.data())
def test_every_write_lands_in_an_allowlisted_real_place_or_is_refused(target, raw, data):
    layout = data.draw(st.lists(st.tuples(st.sampled_from(positions_for(raw)), st.sampled_from(KINDS)), min_size=1,
                                max_size=4), label="layout")
    user, trap = target
    home = user.home
    shutil.rmtree(home)
    home.mkdir(mode=0o700)
    chown_user(home, user.pw)
    shutil.rmtree(trap, ignore_errors=True)
    make_traps(trap, trap / "root")
    plant(user, trap, layout)
    home_before, trap_before = contents([home]), contents([trap])

    refused = False
    with HomeWriter(resolve_account(user.name)) as writer:
        planned, refusals = home_files.validate(raw, {}, False, False)
        if not refusals:
            refusals = home_files.inspect(writer, planned, {}, "stamp")
        refused = bool(refusals)
        if not refused:
            for entry in planned:
                if entry.changed:
                    try:
                        home_files.apply(writer, entry, "stamp")
                    except WriteRefused:
                        refused = True
    assert os.geteuid() == 0 and os.getegid() == 0

    assert contents([trap]) == trap_before
    diff = snapshot_diff(home_before, contents([home]))
    if refusals:
        assert diff == {"added": [], "removed": [], "changed": []}
        return
    links = {os.path.join(str(home), *e.parts) for e in planned if e.replace_symlink}
    for path in diff["added"] + diff["changed"] + diff["removed"]:
        if path == str(home):
            continue
        rel = os.path.relpath(path, str(home))
        assert allowed_location(rel), rel
        was_link = path in home_before and stat.S_ISLNK(home_before[path][0])
        assert not was_link or path in links, rel                         # a link goes only if asked
        if path not in diff["removed"]:
            assert os.path.realpath(path) == path, rel                     # no link on the way
            assert os.lstat(path).st_uid == user.pw.pw_uid, rel
