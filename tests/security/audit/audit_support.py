"""What the audit tests share: the fault proxy process and its driver, and secret scanning."""
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 20


class FaultProxy:
    """Drives faultproxy.py, a real process between the role and the real control plane."""

    def __init__(self, workdir, cp):
        self.state = Path(workdir) / "faultproxy.json"
        self.log_file = open(Path(workdir) / "faultproxy.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "faultproxy.py"), "--cert", str(cp.data_dir / "server.pem"),
             "--key", str(cp.data_dir / "server-key.pem"), "--ca", str(cp.ca_path), "--state", str(self.state)],
            stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=self.log_file)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.state.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fault proxy did not start")
            time.sleep(0.05)
        info = json.loads(self.state.read_text())
        self.url = "https://127.0.0.1:%d" % info["port"]
        self.control = info["control"]
        self.point_at(cp)

    def send(self, **doc):
        with socket.create_connection(("127.0.0.1", self.control), timeout=10) as conn:
            conn.sendall(json.dumps(doc).encode() + b"\n")
            return json.loads(conn.makefile("rb").readline())

    def point_at(self, cp):
        parts = urlsplit(cp.url)
        return self.send(cmd="upstream", address="%s:%d" % (parts.hostname, parts.port))

    def queue(self, method, path, *actions):
        return self.send(cmd="queue", method=method, path=path, actions=list(actions))

    def wait_held(self, timeout=60):
        """The number of the next request the proxy holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            held = self.send(cmd="status")["held"]
            if held:
                return held[0]
            time.sleep(0.05)
        raise AssertionError("no request was held within %d s" % timeout)

    def release(self, n):
        return self.send(cmd="release", n=n)

    def log(self):
        return self.send(cmd="status")["log"]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log_file.close()


def secret_forms(values):
    """Every value and, for JWTs, each of its parts that is long enough to be telling."""
    out = set()
    for value in values:
        if not value:
            continue
        value = value.strip() if isinstance(value, str) else value.decode()
        out.add(value)
        if value.count(".") == 2:
            out.update(part for part in value.split(".") if len(part) >= 16)
    return sorted(out)


def leaks(blob, forms):
    """The forms found in blob (bytes or str)."""
    data = blob.encode() if isinstance(blob, str) else blob
    return [form[:12] + "..." for form in forms if form.encode() in data]
