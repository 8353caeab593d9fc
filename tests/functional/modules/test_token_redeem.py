"""token_redeem as a real process against a real control plane, for a real throwaway account."""
import hashlib
import re
import socket
import stat

from module_runner import CP_USER, events_of, read_state, redeem_args, state_dir

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import event_id
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient


def fingerprint(token):
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return "https://127.0.0.1:%d" % port


def token_status(cp, token):
    return ControlPlaneClient(cp.url, cp.ca_pem, 10).post("/v1/tokens/validate", {"token": token})["status"]


def test_redeem_keeps_the_run_on_the_host(controlplane, account, run_module):
    token = controlplane.mint("dev", CP_USER)
    fp = fingerprint(token)
    result = run_module("token_redeem", redeem_args(controlplane, token, account))

    assert result.status == "ok", result.output
    assert result["changed"] is True and result["repeat"] is False and result["finished"] is False
    assert result["fingerprint"] == fp
    assert result["profile_name"] == "dev" and isinstance(result["profile_version"], int)
    assert result["paths"] == ["~/.zshrc", "~/.config/git/config", "~/.local/bin/hello", "~/.ssh/id_ed25519"]
    assert result["credential_names"] == ["ssh_key"]
    assert re.match(r"^[\w-]+\.\.[\w-]+\.[\w-]+\.[\w-]+$", result["credentials"]["ssh_key"])
    assert token not in result.output

    folder = state_dir(account)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("machine-secret", "run.json", "profile.json"):
        st = (folder / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == account.pw.pw_uid, name
        assert token not in (folder / name).read_text()
    assert re.match(r"^[0-9a-f]{64}$", (folder / "machine-secret").read_text().strip())
    run = read_state(account, "run.json")
    assert run["run_id"] == result["run_id"] and run["fingerprint"] == fp and run["finished"] is False
    assert run["url"] == controlplane.url and run["ca_pem"] == controlplane.ca_pem and run["run_token"]
    assert read_state(account, "profile.json")["name"] == "dev"

    assert token_status(controlplane, token) == "redeemed"
    completed = [e for e in events_of(controlplane, result["run_id"]) if e["type"] == "task.completed"]
    assert [e["id"] for e in completed] == [event_id(result["run_id"], "token_redeem", "task.completed", fp)]
    assert completed[0]["subject"] == fp and result["receipt"]["id"] == completed[0]["id"]


def test_repeat_by_the_same_host_gets_the_same_run(controlplane, account, run_module):
    token = controlplane.mint("dev", CP_USER)
    first = run_module("token_redeem", redeem_args(controlplane, token, account))
    secret = (state_dir(account) / "machine-secret").read_text()
    again = run_module("token_redeem", redeem_args(controlplane, token, account))

    assert first.status == again.status == "ok", again.output
    assert again["changed"] is False and again["repeat"] is True
    assert again["run_id"] == first["run_id"]
    assert (state_dir(account) / "machine-secret").read_text() == secret
    assert again["receipt"]["duplicate"] is True
    completed = [e for e in events_of(controlplane, first["run_id"]) if e["type"] == "task.completed"]
    assert len(completed) == 1


def test_another_host_is_refused_without_echoing_the_token(controlplane, account, run_module):
    token = controlplane.mint("dev", CP_USER)
    assert run_module("token_redeem", redeem_args(controlplane, token, account)).status == "ok"
    # A second account has its own machine secret, so it is another machine binding.
    from helpers.e2e import ThrowawayUser
    with ThrowawayUser(prefix="bs-mod") as other:
        refused = run_module("token_redeem", redeem_args(controlplane, token, other))
        assert refused.failed
        assert refused["msg"].startswith("token refused (already_redeemed): ")
        assert refused["code"] == "already_redeemed" and refused["fingerprint"] == fingerprint(token)
        assert token not in refused.output
        assert not (state_dir(other) / "run.json").exists()


def test_check_mode_consumes_nothing(controlplane, account, run_module):
    token = controlplane.mint("dev", CP_USER)
    result = run_module("token_redeem", redeem_args(controlplane, token, account), check=True)
    assert result.status == "ok", result.output
    assert result["changed"] is True and "would redeem" in result["msg"]
    assert token_status(controlplane, token) == "unused"
    assert not (account.home / ".config").exists()


def test_finished_run_is_not_redeemed_again(controlplane, account, run_module):
    token = controlplane.mint("dev", CP_USER)
    redeemed = run_module("token_redeem", redeem_args(controlplane, token, account))
    finished = run_module("audit_event", {"user": account.name, "type": "run.finished", "data": {"files": 0}})
    assert finished.status == "ok", finished.output

    # No network call is made: an unreachable URL does not matter.
    again = run_module("token_redeem", redeem_args(controlplane, token, account, url=closed_port_url()))
    assert again.status == "ok", again.output
    assert again["changed"] is False and again["finished"] is True and again["run_id"] == redeemed["run_id"]


def test_refusals_name_the_rule(controlplane, account, run_module):
    args = redeem_args(controlplane, "x.y.z", account)
    args["user"] = "root"
    root = run_module("token_redeem", args)
    assert root.failed and "(root-account)" in root["msg"]

    token = controlplane.mint("dev", CP_USER)
    unreachable = run_module("token_redeem", redeem_args(controlplane, token, account, url=closed_port_url(),
                                                         timeout=5))
    assert unreachable.failed and unreachable["code"] == "unreachable"
    assert unreachable["msg"].startswith("control plane unreachable at https://127.0.0.1:")
    assert token not in unreachable.output
    # The machine secret is written before the redeem is attempted.
    assert (state_dir(account) / "machine-secret").exists()
    assert token_status(controlplane, token) == "unused"

    garbage = run_module("token_redeem", redeem_args(controlplane, "not-a-token-at-all", account))
    assert garbage.failed and garbage["msg"].startswith("token refused (token_malformed): ")
    assert "not-a-token-at-all" not in garbage.output
