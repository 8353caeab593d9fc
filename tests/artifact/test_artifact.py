"""What users install is what was tested: build the collection artifact, check what it carries, install
it into an empty collections path and provision a real throwaway account from it by fully qualified
names (real control plane over HTTPS, real ansible-playbook)."""
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from helpers.e2e import REPO, ThrowawayUser, ansible_env, run_playbook
from helpers.stack import Stack, sample_manifest

BIN = Path(sys.executable).parent
# Left out of the artifact: the reference control plane, the benchmarks, test output and local tooling.
FORBIDDEN = re.compile(r"^(controlplane|bench|demo|tests/output|\.ci|\.build|\.venv[^/]*|\.git)(/|$)|^Makefile$"
                       r"|(^|/)__pycache__/|\.pyc$|\.tar\.gz$")
REQUIRED = [
    "MANIFEST.json", "FILES.json", "README.md", "meta/runtime.yml", "playbooks/provision.yml",
    "roles/bootstrap_agent/tasks/main.yml", "roles/bootstrap_agent/meta/argument_specs.yml",
    "plugins/action/token_verify.py", "plugins/lookup/credential.py", "plugins/modules/home_files.py",
    "plugins/modules/token_redeem.py", "plugins/modules/audit_event.py",
]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(REPO)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    path = out / ("bootstrap_saas-provisioning-%s.tar.gz" % version)
    assert path.is_file(), sorted(p.name for p in out.iterdir())
    return path


def test_artifact_leaves_out_control_plane_tests_output_and_bench(artifact):
    with tarfile.open(artifact) as tar:
        names = [m.name[2:] if m.name.startswith("./") else m.name for m in tar.getmembers()]
    assert sorted(n for n in names if FORBIDDEN.search(n)) == []
    assert [n for n in REQUIRED if n not in names] == []


def test_installed_artifact_provisions_a_host_by_fqcn(artifact, tmp_path):
    collections = tmp_path / "collections"
    collections.mkdir()
    env = ansible_env(tmp_path)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)  # only the installed artifact, not the checkout
    env["ANSIBLE_COLLECTIONS_SCAN_SYS_PATH"] = "False"
    installed = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline",
                                "-p", str(collections), str(artifact)],
                               capture_output=True, text=True, timeout=300, check=False, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    root = collections / "ansible_collections" / "bootstrap_saas" / "provisioning"
    assert (root / "MANIFEST.json").is_file(), installed.stdout + installed.stderr
    assert not root.is_symlink()
    listed = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "list", "bootstrap_saas.provisioning",
                             "--format", "json"], capture_output=True, text=True, timeout=120, check=False, env=env)
    assert listed.returncode == 0, listed.stderr
    assert list(json.loads(listed.stdout)) == [str(collections / "ansible_collections")]

    stack = Stack(tmp_path / "stack")
    try:
        with ThrowawayUser() as user:
            result = run_playbook(tmp_path, stack.role_vars(stack.mint(), user.name), "-v",
                                  playbook="bootstrap_saas.provisioning.provision", env=env)
            assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
            for entry in sample_manifest()["files"]:
                assert (user.home / entry["path"][2:]).is_file(), entry["path"]
        events = [e["type"] for e in stack.cp.audit()]
        assert "run.started" in events and "run.finished" in events
    finally:
        stack.cp.stop()
