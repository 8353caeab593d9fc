"""home_files as a real process against a real control plane, for a real throwaway account."""
import hashlib
import json
import os
import socket
import stat

from module_runner import CP_USER, SSH_KEY, ZSHRC, events_of, read_state, redeem_args, state_dir

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import event_id
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient

CREDENTIALS = {"ssh_key": SSH_KEY.decode()}


def redeem(cp, account, run_module, profile="dev"):
    result = run_module("token_redeem", redeem_args(cp, cp.mint(profile, CP_USER), account))
    assert result.status == "ok", result.output
    return result


def mode_of(path):
    return stat.S_IMODE(path.lstat().st_mode)


def rewrite_run(account, **changes):
    path = state_dir(account) / "run.json"
    run = json.loads(path.read_text())
    original = dict(run)
    run.update(changes)
    path.write_text(json.dumps(run))
    os.chown(path, account.pw.pw_uid, account.pw.pw_gid)
    return original


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "https://127.0.0.1:%d" % s.getsockname()[1]


def test_writes_the_profile_and_audits_every_entry(controlplane, account, run_module):
    run_id = redeem(controlplane, account, run_module)["run_id"]
    result = run_module("home_files", {"user": account.name, "credentials": CREDENTIALS})
    assert result.status == "ok", result.output
    assert result["changed"] is True
    home = account.home
    assert [f["path"] for f in result["files"]] == ["~/.zshrc", "~/.config/git/config", "~/.local/bin/hello",
                                                    "~/.ssh/id_ed25519"]
    assert all(f["changed"] and f["owner"] == account.name for f in result["files"])
    assert result["files"][3] == {"path": "~/.ssh/id_ed25519", "dest": str(home / ".ssh/id_ed25519"),
                                  "mode": "0600", "owner": account.name, "changed": True}
    assert (home / ".zshrc").read_text() == ZSHRC and mode_of(home / ".zshrc") == 0o644
    assert mode_of(home / ".local/bin/hello") == 0o755
    assert (home / ".ssh/id_ed25519").read_bytes() == SSH_KEY and mode_of(home / ".ssh/id_ed25519") == 0o600
    assert mode_of(home / ".ssh") == 0o700
    assert all((home / p).stat().st_uid == account.pw.pw_uid for p in (".zshrc", ".ssh/id_ed25519", ".local/bin"))
    assert SSH_KEY.decode().splitlines()[1] not in result.output
    assert read_state(account, "files.json")["paths"] == sorted(f["path"] for f in result["files"])

    events = {e["id"]: e for e in events_of(controlplane, run_id)}
    assert [r["id"] for r in result["receipts"]] == [
        event_id(run_id, "home_files", "file.written", f["path"]) for f in result["files"]
    ] + [event_id(run_id, "home_files", "task.completed", "dev")]
    zshrc = events[result["receipts"][0]["id"]]
    assert zshrc["data"] == {"mode": "0644", "owner": account.name,
                             "sha256": hashlib.sha256(ZSHRC.encode()).hexdigest()}
    key = events[result["receipts"][3]["id"]]
    assert key["data"] == {"mode": "0600", "owner": account.name, "credential": "ssh_key"}
    assert events[result["receipts"][4]["id"]]["type"] == "task.completed"

    again = run_module("home_files", {"user": account.name, "credentials": CREDENTIALS})
    assert again.status == "ok", again.output
    assert again["changed"] is False and not any(f["changed"] for f in again["files"])
    types = [e["type"] for e in events_of(controlplane, run_id) if e["type"].startswith("file.")]
    assert types.count("file.unchanged") == 4 and types.count("file.written") == 4


def test_any_refused_entry_writes_nothing(controlplane, account, run_module):
    controlplane.set_profile("hostile", {"files": [
        {"path": "~/.zshrc", "mode": "0644", "content": "ok\n"},
        {"path": "/etc/cron.d/evil", "mode": "0644", "content": "* * * * * root sh\n"},
        {"path": "~/.config/bootstrap-saas/run.json", "mode": "0600", "content": "{}"},
        {"path": "~/.ssh/id_rsa", "mode": "0644", "credential": "ssh_key"},
        {"path": "~/.bashrc", "mode": "0644", "credential": "ssh_key"},
    ]})
    run_id = redeem(controlplane, account, run_module, profile="hostile")["run_id"]
    result = run_module("home_files", {"user": account.name, "credentials": {}})
    assert result.failed
    msg = result["msg"]
    assert msg.startswith("4 profile entries refused, nothing was written: ")
    for expected in ("/etc/cron.d/evil (absolute-path)", "~/.config/bootstrap-saas/run.json (reserved-agent-state)",
                     "~/.ssh/id_rsa (mode)", "~/.bashrc (credential-missing)", "Allowed paths: ~/.config/"):
        assert expected in msg, expected
    assert {r["rule"] for r in result["refused"]} == {"absolute-path", "reserved-agent-state", "mode",
                                                      "credential-missing"}
    assert not (account.home / ".zshrc").exists() and not (account.home / ".ssh").exists()

    events = events_of(controlplane, run_id)
    denied = [e for e in events if e["type"] == "file.denied"]
    assert sorted(e["data"]["rule"] for e in denied) == ["absolute-path", "credential-missing", "mode",
                                                         "reserved-agent-state"]
    assert [e["type"] for e in events].count("task.failed") == 1


def test_a_symlinked_destination_is_refused_before_anything_is_written(controlplane, account, run_module):
    redeem(controlplane, account, run_module)
    os.symlink("/etc/passwd", account.home / ".zshrc")
    before = open("/etc/passwd", "rb").read()
    result = run_module("home_files", {"user": account.name, "credentials": CREDENTIALS})
    assert result.failed and "~/.zshrc (symlink)" in result["msg"]
    assert open("/etc/passwd", "rb").read() == before
    assert not (account.home / ".ssh").exists() and not (account.home / ".local").exists()


def test_check_mode_before_redeem_uses_the_manifest(controlplane, account, run_module):
    token = controlplane.mint("dev", CP_USER)
    client = ControlPlaneClient(controlplane.url, controlplane.ca_pem, 10)
    manifest = client.post("/v1/tokens/validate", {"token": token})["manifest"]
    (account.home / ".zshrc").write_text(ZSHRC)
    os.chmod(account.home / ".zshrc", 0o644)
    audit_before = len(controlplane.audit())

    result = run_module("home_files", {"user": account.name, "manifest": manifest}, check=True, diff=True)
    assert result.status == "ok", result.output
    changed = {f["path"]: f["changed"] for f in result["files"]}
    assert changed == {"~/.zshrc": False, "~/.config/git/config": True, "~/.local/bin/hello": True,
                       "~/.ssh/id_ed25519": True}
    assert not (account.home / ".ssh").exists() and not (account.home / ".config").exists()
    assert len(controlplane.audit()) == audit_before


def test_check_and_diff_after_redeem_hide_credentials(controlplane, account, run_module):
    redeem(controlplane, account, run_module)
    audit_before = len(controlplane.audit())
    result = run_module("home_files", {"user": account.name, "credentials": CREDENTIALS}, check=True, diff=True)
    assert result.status == "ok", result.output
    assert result["changed"] is True and all(f["changed"] for f in result["files"])
    diffs = {d["after_header"]: d for d in result["diff"]}
    assert diffs[str(account.home / ".zshrc")]["after"] == ZSHRC
    key = diffs[str(account.home / ".ssh/id_ed25519")]
    assert key["after"] == "<credential ssh_key: content hidden>\n" and key["before"] == ""
    assert SSH_KEY.decode().splitlines()[1] not in result.output
    assert not (account.home / ".zshrc").exists()
    assert len(controlplane.audit()) == audit_before


def test_undelivered_events_are_spooled_and_delivered_first_next_time(controlplane, account, run_module):
    run_id = redeem(controlplane, account, run_module)["run_id"]
    original = rewrite_run(account, url=closed_port_url())
    result = run_module("home_files", {"user": account.name, "credentials": CREDENTIALS})
    assert result.failed
    assert "5 event(s) are spooled in ~/.config/bootstrap-saas/spool.jsonl" in result["msg"], result["msg"]
    spool = state_dir(account) / "spool.jsonl"
    assert mode_of(spool) == 0o600 and len(spool.read_text().splitlines()) == 5
    assert not [e for e in events_of(controlplane, run_id) if e["type"].startswith("file.")]

    # With a spool it cannot deliver, the next call fails closed before writing anything.
    (account.home / ".zshrc").unlink()
    blocked = run_module("home_files", {"user": account.name, "credentials": CREDENTIALS})
    assert blocked.failed and "5 event(s) are spooled" in blocked["msg"]
    assert not (account.home / ".zshrc").exists()

    rewrite_run(account, url=original["url"])
    finished = run_module("audit_event", {"user": account.name, "data": {"files": 4}})
    assert finished.status == "ok", finished.output
    assert not spool.exists()
    types = [e["type"] for e in events_of(controlplane, run_id)]
    assert types.count("file.written") == 4 and types[-1] == "run.finished"
    assert types.index("task.completed", types.index("file.written")) < types.index("run.finished")
