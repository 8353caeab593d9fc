"""A real control plane (HTTPS, SQLite) loaded with the sample profile, a user key and an encrypted SSH key."""
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from helpers.controlplane import ControlPlane
from helpers.e2e import REPO

SAMPLE_PROFILE = REPO / "demo" / "sample-profile.yml"
CP_USER = "alice"


def sample_manifest():
    return yaml.safe_load(SAMPLE_PROFILE.read_text())


def new_ssh_private_key():
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())


class Stack:
    """The control plane with a user key and the sample profile `dev` for user alice."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.cp = ControlPlane(self.workdir / "cp")
        self.cp.init()
        self.user_key_file = self.workdir / "alice.key"
        self.cp.new_user_key(self.user_key_file)
        self.ssh_key = new_ssh_private_key()
        key_file = self.workdir / "id_ed25519.plain"
        key_file.write_bytes(self.ssh_key)
        self.cp.put_credential(CP_USER, "ssh_key", self.user_key_file, self.ssh_key)
        key_file.unlink()
        self.cp.set_profile("dev", sample_manifest())
        self.cp.start()

    def role_vars(self, token, user, **extra):
        values = {
            "bootstrap_agent_url": self.cp.url,
            "bootstrap_agent_ca_path": str(self.cp.ca_path),
            "bootstrap_agent_token": token,
            "bootstrap_agent_user": user,
            "bootstrap_agent_user_key": self.user_key_file.read_text(),
        }
        values.update(extra)
        return values

    def mint(self, profile="dev", ttl=None):
        return self.cp.mint(profile, CP_USER, ttl=ttl)
