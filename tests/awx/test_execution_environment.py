"""ansible-builder finds the collection's needs: introspect on the built and installed collection."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.e2e import REPO

BIN = Path(sys.executable).parent
AWX = REPO / "extensions" / "awx"


def run(*cmd, cwd=None):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, cwd=cwd,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def staged_checkout(dest):
    """The files a clone has (tracked and new, not ignored), without local virtual environments."""
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    for rel in filter(None, listed.split("\0")):
        if rel.split("/", 1)[0].startswith(".venv") or not (REPO / rel).is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    return dest


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The collection artifact, as `ansible-galaxy collection build` makes it for the EE."""
    work = tmp_path_factory.mktemp("build")
    source = staged_checkout(work / "src")
    run(BIN / "ansible-galaxy", "collection", "build", "--output-path", work / "dist", source)
    (built,) = (work / "dist").glob("bootstrap_saas-provisioning-*.tar.gz")
    return built


def test_introspect_lists_the_collections_python_and_system_needs(tmp_path, tarball):
    # --force: the checkout is on the collections path already, and the EE must get the built artifact.
    installed = tmp_path / "ee" / "collections"
    run(BIN / "ansible-galaxy", "collection", "install", "--offline", "--force", "-p", installed, tarball)
    out = yaml.safe_load(run(BIN / "ansible-builder", "introspect", "--sanitize", installed))
    origin = "# from collection bootstrap_saas.provisioning"
    python = {line.split(origin)[0].strip() for line in out["python"] if origin in line}
    system = {line.split(origin)[0].strip() for line in out["system"] if origin in line}
    wanted = {line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert wanted == {"cryptography>=41.0", "PyJWT>=2.8"} and python == wanted
    assert system == {"openssh-client [platform:dpkg]", "openssh-clients [platform:rpm]", "ca-certificates"}


def test_the_ee_definition_makes_a_build_context_with_the_collection(tmp_path, tarball):
    definition = tmp_path / "awx"
    shutil.copytree(AWX, definition)
    shutil.copy2(tarball, definition)
    run(BIN / "ansible-builder", "create", "-f", definition / "execution-environment.yml", "-c", tmp_path / "ctx")
    wanted = yaml.safe_load((AWX / "requirements.yml").read_text())["collections"][0]["name"]
    assert (tmp_path / "ctx" / "_build" / wanted).is_file(), "requirements.yml names another tarball than the build"
    containerfile = (tmp_path / "ctx" / "Containerfile").read_text()
    assert "ansible-galaxy collection install" in containerfile and "introspect" in containerfile
