"""Drive a real reference control plane (`bs-controlplane`) from tests: init, serve over HTTPS, CLI calls."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 20
STOP_TIMEOUT = 10
CLI_TIMEOUT = 60


def _executable():
    beside = Path(sys.executable).parent / "bs-controlplane"
    if beside.exists():
        return str(beside)
    found = shutil.which("bs-controlplane")
    if not found:
        raise RuntimeError("bs-controlplane is not installed (pip install -e ./controlplane)")
    return found


class ControlPlane:
    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)
        self.ca_path = self.data_dir / "ca.pem"
        self.db_path = self.data_dir / "controlplane.db"
        self.log_path = self.data_dir / "server.log"
        self.url = None
        self.admin_key = None
        self.process = None
        self._log = None

    # --- lifecycle ------------------------------------------------------------------------------

    def init(self, issuer=None):
        args = ["init", "--data", str(self.data_dir)]
        if issuer:
            args += ["--issuer", issuer]
        self.cli(*args)
        self.admin_key = (self.data_dir / "admin.key").read_text().strip()
        return self

    def start(self, *extra_args):
        if self.process is not None:
            raise RuntimeError("the control plane is running already")
        if self.admin_key is None and (self.data_dir / "admin.key").exists():
            self.admin_key = (self.data_dir / "admin.key").read_text().strip()
        state = self.data_dir / "server.json"
        if state.exists():
            state.unlink()
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [_executable(), "serve", "--data", str(self.data_dir), "--listen", "127.0.0.1:0", *map(str, extra_args)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                self.process = None
                raise RuntimeError(f"bs-controlplane serve exited early:\n{self.log_text()}")
            if state.exists():
                try:
                    info = json.loads(state.read_text())
                except ValueError:
                    info = {}
                if info.get("pid") == self.process.pid:
                    self.url = info["url"]
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"bs-controlplane serve did not start within {START_TIMEOUT} s:\n{self.log_text()}")

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None
        self.url = None
        self._close_log()

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # --- CLI --------------------------------------------------------------------------------------

    def cli(self, *args, check=True, input=None):
        result = subprocess.run([_executable(), *map(str, args)], capture_output=True, text=True, input=input,
                                timeout=CLI_TIMEOUT, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"bs-controlplane {args[0] if args else ''} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")
        return result

    def set_profile(self, name, manifest):
        fd, path = tempfile.mkstemp(suffix=".json", dir=str(self.data_dir))
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(manifest, handle)
            return self.cli("profile", "set", "--data", str(self.data_dir), name, path)
        finally:
            os.unlink(path)

    def new_user_key(self, path):
        self.cli("user-key", "new", "--out", str(path))
        return Path(path)

    def put_credential(self, user, name, key_file, plaintext: bytes):
        fd, path = tempfile.mkstemp(dir=str(self.data_dir))
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(plaintext)
            return self.cli("credential", "put", "--data", str(self.data_dir), "--user", user, "--name", name,
                            "--key-file", str(key_file), "--from-file", path)
        finally:
            os.unlink(path)

    def mint(self, profile, user, ttl=None) -> str:
        args = ["mint", "--data", str(self.data_dir), "--profile", profile, "--user", user]
        if ttl is not None:
            args += ["--ttl", str(ttl)]
        return self.cli(*args).stdout.strip()

    def audit(self) -> list:
        return json.loads(self.cli("audit", "list", "--data", str(self.data_dir), "--json").stdout)

    def audit_verify(self):
        return self.cli("audit", "verify", "--data", str(self.data_dir), check=False)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
