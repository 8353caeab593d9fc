"""The main job end to end: real control plane over HTTPS, real ansible-playbook, real users."""
import collections
import hashlib
import re
import time

import pytest

from helpers.controlplane import ControlPlane
from helpers.stack import CP_USER, sample_manifest
from helpers.e2e import SNAPSHOT_ROOTS, ThrowawayUser, ansible_env, run_playbook, snapshot, snapshot_diff, tree

AGENT_STATE = (".config", ".config/bootstrap-saas")
PAYLOAD = "bs-canary-root::0:0::/:/bin/sh\n"
ACCOUNT_DATABASE = {"/etc/" + name + suffix for name in ("passwd", "shadow", "group", "gshadow", "subuid", "subgid")
                    for suffix in ("", "-")} | {"/etc/.pwd.lock"}
# Caches of tools on this machine (ansible-test, pip, other Ansible runs) that change on their own.
TOOL_CACHES = ("/root/.ansible/", "/root/.cache/")
LEEWAY = 30  # seconds, the documented default of token_verify and the control plane


def recap(result):
    """The PLAY RECAP counters of the single host."""
    m = re.search(r"^localhost\s+:\s+(.*)$", result.stdout, re.M)
    assert m, result.stdout + result.stderr
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def assert_ok(result):
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


def profile_files(user):
    """{home-relative path: (mode, owner, bytes)} of the sample profile's entries, as on disk."""
    out = {}
    for entry in sample_manifest()["files"]:
        rel = entry["path"][2:]
        p = user.home / rel
        st = p.lstat()
        out[rel] = ("%04o" % (st.st_mode & 0o7777), st.st_uid, p.read_bytes())
    return out


def agent_only(before, after):
    """Entries the run added to a home that are not the agent's own state folder."""
    added = set(after) - set(before)
    return sorted(p for p in added if not (p in AGENT_STATE or p.startswith(".config/bootstrap-saas/")))


@pytest.fixture(scope="module")
def provisioned(stack, tmp_path_factory):
    """One host provisioned with the sample profile, kept for the tests that look at it."""
    work = tmp_path_factory.mktemp("host1")
    with ThrowawayUser() as user:
        token = stack.mint()
        first = run_playbook(work, stack.role_vars(token, user.name), "-vvv")
        yield {"user": user, "token": token, "first": first, "work": work}


def test_provision_writes_every_sample_file_with_mode_owner_and_audit(stack, provisioned):
    assert_ok(provisioned["first"])
    user = provisioned["user"]
    files = profile_files(user)
    for entry in sample_manifest()["files"]:
        mode, uid, data = files[entry["path"][2:]]
        assert mode == entry["mode"], entry["path"]
        assert uid == user.pw.pw_uid, entry["path"]
        expected = stack.ssh_key if "credential" in entry else entry["content"].encode()
        assert data == expected, entry["path"]
    assert "%04o" % ((user.home / ".ssh").stat().st_mode & 0o7777) == "0700"

    events = stack.cp.audit()
    fingerprint = hashlib.sha256(provisioned["token"].encode()).hexdigest()
    minted = [e for e in events if e["type"] == "token.minted" and e["data"].get("fingerprint") == fingerprint]
    validated = [e for e in events if e["type"] == "token.validated" and e["data"].get("fingerprint") == fingerprint]
    started = [e for e in events if e["type"] == "run.started" and e["data"].get("fingerprint") == fingerprint]
    assert len(minted) == 1 and validated and len(started) == 1
    run = [e for e in events if e["run_id"] == started[0]["run_id"]]
    kinds = collections.Counter(e["type"] for e in run)
    assert kinds["file.written"] == len(sample_manifest()["files"])
    assert {e["subject"] for e in run if e["type"] == "file.written"} == {
        e["path"] for e in sample_manifest()["files"]}
    # one event per task: token_verify -> token.validated (above), token_redeem and home_files ->
    # task.completed, audit_event -> run.finished
    assert sorted(e["task"] for e in run if e["type"] == "task.completed") == ["home_files", "token_redeem"]
    assert kinds["run.finished"] == 1
    verify = stack.cp.audit_verify()
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_rerun_with_same_token_on_same_host_reports_no_change(stack, provisioned):
    assert_ok(provisioned["first"])
    user = provisioned["user"]
    before = profile_files(user)
    events_before = len(stack.cp.audit())
    again = run_playbook(provisioned["work"], stack.role_vars(provisioned["token"], user.name))
    assert_ok(again)
    assert recap(again)["changed"] == 0, again.stdout
    assert recap(again)["failed"] == 0
    assert profile_files(user) == before
    new_types = [e["type"] for e in stack.cp.audit()[events_before:]]
    assert "run.started" not in new_types and "file.written" not in new_types, new_types


def test_same_token_on_another_host_is_refused_as_already_redeemed(stack, provisioned, tmp_path):
    with ThrowawayUser() as other:
        home_before = tree(other.home)
        result = run_playbook(tmp_path, stack.role_vars(provisioned["token"], other.name))
        assert result.returncode != 0
        assert "already redeemed" in (result.stdout + result.stderr).lower().replace("_", " ")
        assert agent_only(home_before, tree(other.home)) == []
    refused = [e for e in stack.cp.audit() if e["type"] == "token.redeem_refused"]
    assert refused


def test_expired_token_is_refused_and_writes_nothing(stack, tmp_path):
    token = stack.mint(ttl=1)
    time.sleep(1 + LEEWAY + 1.5)   # past exp and the clock-skew leeway both sides allow
    with ThrowawayUser() as user:
        home_before = tree(user.home)
        result = run_playbook(tmp_path, stack.role_vars(token, user.name))
        assert result.returncode != 0
        assert "expired" in result.stdout.lower()
        assert tree(user.home) == home_before


def test_token_signed_by_another_key_is_refused_and_writes_nothing(stack, tmp_path):
    rogue = ControlPlane(tmp_path / "rogue")
    rogue.init()
    rogue.set_profile("dev", {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "rogue\n"}]})
    token = rogue.mint("dev", CP_USER)
    with ThrowawayUser() as user:
        home_before = tree(user.home)
        result = run_playbook(tmp_path, stack.role_vars(token, user.name))
        assert result.returncode != 0
        out = result.stdout.lower()
        assert "token refused" in out and ("unknown_key" in out or "bad_signature" in out), result.stdout[-3000:]
        assert tree(user.home) == home_before


@pytest.mark.parametrize("bad_path, rule", [
    ("/etc/passwd", "absolute-path"),
    ("~/../../etc/passwd", "parent-component"),
    ("~/.config-evil/x", "not-allowlisted"),
])
def test_refused_profile_path_fails_naming_path_and_rule_and_writes_nothing(stack, tmp_path, bad_path, rule):
    manifest = sample_manifest()
    manifest["files"].insert(3, {"path": bad_path, "mode": "0644", "content": PAYLOAD})
    profile = "hostile-%s" % rule
    stack.cp.set_profile(profile, manifest)
    token = stack.mint(profile=profile)
    with ThrowawayUser() as user:
        system_before = snapshot(SNAPSHOT_ROOTS)
        home_before = tree(user.home)
        result = run_playbook(tmp_path, stack.role_vars(token, user.name))
        system_after = snapshot(SNAPSHOT_ROOTS)
        assert result.returncode != 0
        assert bad_path in result.stdout and rule in result.stdout, result.stdout[-4000:]
        diff = snapshot_diff(system_before, system_after)
        # Other runs on the machine may add accounts meanwhile; those files may change, but never
        # to hold what the profile carried.
        for path in diff["changed"] + diff["added"]:
            if path in ACCOUNT_DATABASE:
                assert PAYLOAD.encode() not in open(path, "rb").read(), path
        unexplained = {k: [p for p in v if p not in ACCOUNT_DATABASE and not (p + "/").startswith(TOOL_CACHES)]
                       for k, v in diff.items()}
        assert unexplained == {"added": [], "removed": [], "changed": []}
        # The agent's own state folder (machine secret, run) is written by the redeem; nothing else.
        assert agent_only(home_before, tree(user.home)) == []
        assert {k: v for k, v in tree(user.home).items() if k in home_before} == home_before
    denied = [e for e in stack.cp.audit() if e["type"] == "file.denied" and e["subject"] == bad_path]
    assert denied


def test_token_and_credential_appear_nowhere(stack, provisioned):
    assert_ok(provisioned["first"])
    token = provisioned["token"]
    key_line = stack.ssh_key.decode().splitlines()[2]   # a line from the middle of the private key
    user_key = stack.user_key_file.read_text()
    k_value = re.search(r'"k"\s*:\s*"([^"]+)"', user_key).group(1)
    output = provisioned["first"].stdout + provisioned["first"].stderr
    stored = b"".join(p.read_bytes() for p in stack.cp.db_path.parent.glob(stack.cp.db_path.name + "*"))
    audit = repr(stack.cp.audit()) + stack.cp.log_text()
    for canary in (token, key_line, k_value):
        assert canary not in output
        assert canary.encode() not in stored
        assert canary not in audit
    assert token.split(".")[2] not in output        # not even the signature part


def test_check_mode_consumes_nothing_and_writes_nothing(stack, tmp_path):
    token = stack.mint()
    fingerprint = hashlib.sha256(token.encode()).hexdigest()
    with ThrowawayUser() as user:
        home_before = tree(user.home)
        result = run_playbook(tmp_path, stack.role_vars(token, user.name), "--check")
        assert_ok(result)
        assert tree(user.home) == home_before
        # The preview comes from the manifest that token_verify returned: the files would change.
        write_task = result.stdout.split("Write the profile into the allowlisted home paths", 1)[1]
        write_task = write_task.split("TASK [", 1)[0]
        assert "changed: [" in write_task, result.stdout[-3000:]
        started = [e for e in stack.cp.audit() if e["type"] == "run.started"
                   and e["data"].get("fingerprint") == fingerprint]
        assert started == []
        # and the token still works for real afterwards
        assert_ok(run_playbook(tmp_path, stack.role_vars(token, user.name)))
        assert (user.home / ".zshrc").is_file()


def test_no_token_at_all_is_refused_by_name_before_anything_is_redeemed(stack, tmp_path):
    with ThrowawayUser() as user:
        home_before = tree(user.home)
        variables = stack.role_vars("", user.name)
        result = run_playbook(tmp_path, variables, env=dict(ansible_env(tmp_path), BOOTSTRAP_SAAS_TOKEN=""))
        assert result.returncode != 0
        assert "no token given" in result.stdout, result.stdout[-3000:]
        assert tree(user.home) == home_before
