"""The hostile corpus through the real home_files module (ansible-playbook, a real control plane, real
accounts): as root for each throwaway user, and as that user directly.

For every case the home and the case's traps are compared before and after, and the refusal must
be the expected one (path and rule). /etc and /opt are compared in full around each batch. /usr and
/root are compared by the metadata of every directory around the whole corpus (an entry created,
removed or renamed anywhere there changes its directory), and the entries of a changed directory
must not belong to a corpus account nor carry the corpus canary, which any write of the agent would
(other processes of the machine may write below /root meanwhile); the traps below /root are
compared in full per case.
"""
import contextlib
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest

from helpers.e2e import ThrowawayUser, snapshot, snapshot_diff
from paths_corpus import Layout, all_cases, make_traps
from paths_support import (STATE, PathsControlPlane, contents, directory_metadata, escaped_writes, install_state,
                           reset_home, run_home_files, system_problems)

HOMES = 42        # cases run side by side, one home each, in one ansible-playbook run per batch


@pytest.fixture(scope="module")
def paths_cp(tmp_path_factory):
    cp = PathsControlPlane(tmp_path_factory.mktemp("paths-cp"))
    yield cp
    cp.stop()


@pytest.fixture(scope="module")
def homes():
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(ThrowawayUser(prefix="bs-pc")) for dummy in range(HOMES)]


def test_the_corpus_is_big_enough_and_covers_every_category():
    ids = [c.id for c in all_cases()]
    assert len(ids) == len(set(ids)) and len(ids) >= 80
    for prefix in ("path-", "schema-", "ssh-dir-to-root-ssh", "authorized-keys-to-root-file", "dangling-id-key",
                   "config-to-etc", "hardlink-", "planted-temp-names", "bashrc-stow-link", "state-", "account-"):
        assert any(i.startswith(prefix) for i in ids), prefix


@pytest.mark.parametrize("as_user", [False, True], ids=["as-root-for-the-user", "as-the-user"])
def test_hostile_corpus(paths_cp, homes, tmp_path, as_user):
    token = secrets.token_hex(3)
    trap_root, rtrap_root = Path("/tmp/bs-trap-%s" % token), Path("/root/bs-trap-%s" % token)
    trap_root.mkdir(mode=0o755)
    rtrap_root.mkdir(mode=0o700)
    try:
        since = time.time_ns()
        big_before = directory_metadata(["/usr", "/root"], skip={str(rtrap_root)})
        cases = all_cases()
        problems = []
        for start in range(0, len(cases), len(homes)):
            problems += run_batch(paths_cp, list(zip(cases[start:start + len(homes)], homes)), trap_root, rtrap_root,
                                  tmp_path, as_user)
        big_after = directory_metadata(["/usr", "/root"], skip={str(rtrap_root)})
        uids = {user.pw.pw_uid for user in homes}
        problems += ["written below /usr or /root: %s" % p for p in escaped_writes(big_before, big_after, since, uids)]
    finally:
        shutil.rmtree(trap_root, ignore_errors=True)
        shutil.rmtree(rtrap_root, ignore_errors=True)
    assert not problems, "\n".join(problems)


def run_batch(cp, pairs, trap_root, rtrap_root, workdir, as_user):
    prepared = []
    for case, user in pairs:
        trap, rtrap = trap_root / case.id[:60], rtrap_root / case.id[:60]
        make_traps(trap, rtrap)
        reset_home(user)
        run, profile, _stored = cp.new_run("c-" + secrets.token_hex(6), case.files)
        install_state(user, run, profile)
        if case.layout:
            case.layout(Layout(user.home, user.pw, trap, rtrap))
        prepared.append((case, user, trap, rtrap, run["run_id"], contents([user.home]), contents([trap, rtrap])))
    system_before = snapshot(["/etc", "/opt"])
    items = [dict({"user": case.user or user.name, "become": case.user is None},
                  **({"allowed": case.allowed} if case.allowed else {})) for case, user, *dummy in prepared]
    results = run_home_files(workdir, items, as_user=as_user)
    system_after = snapshot(["/etc", "/opt"])
    problems = system_problems(system_before, system_after)
    events = cp.cp.audit()
    for (case, user, trap, rtrap, run_id, home_before, trap_before), result in zip(prepared, results):
        found = case_problems(case, user, result, home_before, contents([user.home]), trap_before,
                              contents([trap, rtrap]), [e for e in events if e.get("run_id") == run_id])
        problems += ["%s: %s" % (case.id, p) for p in found]
        restore_home(user, trap)
    return problems


def restore_home(user, trap):
    if os.path.islink(user.home):
        os.unlink(user.home)
        os.rename(trap / "open" / "home", user.home)


def case_problems(case, user, result, home_before, home_after, trap_before, trap_after, events):
    out = []
    msg = result.get("msg") or ""
    if case.failed:
        if not result.get("failed") or case.failed not in msg:
            out.append("expected a failure with %r, got %r" % (case.failed, msg or result.get("files")))
    elif case.refused:
        got = sorted((r["path"], r["rule"]) for r in result.get("refused") or [])
        if not result.get("failed") or got != sorted(case.refused):
            out.append("expected refusals %r, got %r (%s)" % (case.refused, got, msg))
        for path, rule in case.refused:
            if "%s (%s)" % (path, rule) not in msg:
                out.append("message does not name %s (%s): %s" % (path, rule, msg))
        denied = sorted((e["subject"], e["data"].get("rule")) for e in events if e["type"] == "file.denied")
        if denied != sorted(case.refused):
            out.append("file.denied events %r, expected %r" % (denied, case.refused))
    elif result.get("failed"):
        out.append("expected success, got %s" % msg)
    for text in case.says:
        if text not in msg:
            out.append("message lacks %r: %s" % (text, msg))
    if case.refused and "the files before it were written" not in case.says and "nothing was written" not in msg:
        out.append("refusal does not say that nothing was written: %s" % msg)

    if trap_before != trap_after:
        d = snapshot_diff(trap_before, trap_after)
        out.append("trap changed: %r" % d)

    home = str(user.home)
    allowed = set()
    for rel in list(case.written) + case.gone:
        parts = Path(rel).parts
        allowed.update(os.path.join(home, *parts[:i]) for i in range(len(parts) + 1))
    state = os.path.join(home, *STATE)
    diff = snapshot_diff(home_before, home_after)
    for kind in ("added", "removed", "changed"):
        for path in diff[kind]:
            in_state = path == state or path.startswith(state + os.sep)
            if path not in allowed and not (case.written and in_state):
                out.append("home %s: %s" % (kind, path))
    for rel in case.kept:
        p = os.path.join(home, rel)
        if home_before.get(p) is None or home_before.get(p) != home_after.get(p):
            out.append("%s was not kept as planted" % rel)
    for rel, data in case.written.items():
        p = Path(home) / rel
        if p.is_symlink() or not p.is_file() or os.path.realpath(p) != str(p):
            out.append("%s is not a regular file in the home" % rel)
        elif p.read_bytes() != data or p.lstat().st_uid != user.pw.pw_uid:
            out.append("%s has unexpected content or owner" % rel)
    for rel in case.gone:
        if os.path.lexists(os.path.join(home, rel)):
            out.append("%s still exists" % rel)
    return out
