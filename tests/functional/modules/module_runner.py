"""Helpers to run the target-side modules as real processes: `ansible localhost -m ...` with the host's system
Python (standard library only), against a real control plane, for a real throwaway account."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.controlplane import ControlPlane
from helpers.e2e import COLLECTIONS, HOST_PYTHON, ThrowawayUser

HERE = Path(__file__).resolve().parent
CP_USER = "alice"
ZSHRC = "export EDITOR=vim\n"
SSH_KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
DEV_PROFILE = {"files": [
    {"path": "~/.zshrc", "mode": "0644", "content": ZSHRC},
    {"path": "~/.config/git/config", "mode": "0644", "content": "[user]\n\tname = Alice\n"},
    {"path": "~/.local/bin/hello", "mode": "0755", "content": "#!/bin/sh\necho hello\n"},
    {"path": "~/.ssh/id_ed25519", "mode": "0600", "credential": "ssh_key"},
]}
MODULE_TIMEOUT = 120


class Result(dict):
    def __init__(self, status, result, output):
        super().__init__(result)
        self.status = status
        self.output = output

    @property
    def failed(self):
        return self.status != "ok"


class ModuleRunner:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        home = self.workdir / "ansible-home"
        home.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
            "ANSIBLE_CALLBACK_PLUGINS": str(HERE / "callback_plugins"),
            "ANSIBLE_STDOUT_CALLBACK": "result_json",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
            "ANSIBLE_NOCOLOR": "1",
            "PATH": str(Path(sys.executable).parent) + os.pathsep + self.env.get("PATH", ""),
        })

    def __call__(self, module, args, check=False, diff=False):
        cmd = ["ansible", "localhost", "-m", "bootstrap_saas.provisioning." + module, "-a", json.dumps(args),
               "-e", "ansible_python_interpreter=" + HOST_PYTHON]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=MODULE_TIMEOUT,
                              cwd=str(self.workdir), check=False)
        output = proc.stdout + proc.stderr
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                parsed = json.loads(line[len("RESULT "):])
                return Result(parsed["status"], parsed["result"], output)
        raise AssertionError("no result from ansible (rc %d):\n%s" % (proc.returncode, output))


@pytest.fixture(scope="module")
def controlplane(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cp")
    cp = ControlPlane(workdir / "cp")
    cp.init()
    cp.user_key_file = cp.new_user_key(workdir / "alice.key")
    cp.put_credential(CP_USER, "ssh_key", cp.user_key_file, SSH_KEY)
    cp.set_profile("dev", DEV_PROFILE)
    cp.start()
    cp.ca_pem = cp.ca_path.read_text()
    yield cp
    cp.stop()


@pytest.fixture
def account():
    with ThrowawayUser(prefix="bs-mod") as user:
        yield user


@pytest.fixture
def run_module(tmp_path):
    return ModuleRunner(tmp_path)


def state_dir(user):
    return user.home / ".config" / "bootstrap-saas"


def read_state(user, name):
    return json.loads((state_dir(user) / name).read_text())


def redeem_args(cp, token, user, **extra):
    args = {"url": cp.url, "ca_pem": cp.ca_pem, "token": token, "user": user.name}
    args.update(extra)
    return args


def events_of(cp, run_id):
    return [e for e in cp.audit() if e.get("run_id") == run_id]
