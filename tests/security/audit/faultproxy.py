"""A fault proxy in front of the real control plane, run as a process of its own.

It terminates TLS with the control plane's own certificate (so the client's CA pinning holds) and
re-encrypts to the server, because two of the faults need HTTP message boundaries that a TCP
passthrough cannot see: a canned 500, and a request that the server processes while its answer is
lost. Per (method, path) it takes the next action from a queue; an empty queue passes.

  pass   forward the request, relay the answer
  500    answer 500 internal_error itself; the server never sees the request
  drop   close the connection without an answer; the server never sees the request
  hang   keep the connection open and never answer, until the client gives up
  late   forward the request (the server commits it), swallow the answer until the client gives up
  hold   wait until the driver releases it (meanwhile the driver may stop or restart the server), then pass

Control: one JSON line per connection to the control port, one JSON line back.
"""
import argparse
import json
import os
import socket
import ssl
import sys
import threading
import time

CANNED_500 = json.dumps({"error": {"code": "internal_error", "message": "injected fault"}}).encode()
GIVE_UP = 120  # seconds a hanging connection is kept at most


class Proxy:
    def __init__(self, cert, key, ca):
        self.server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_tls.load_cert_chain(cert, key)
        self.client_tls = ssl.create_default_context(cafile=ca)
        self.lock = threading.Lock()
        self.upstream = None
        self.queues = {}
        self.log = []
        self.held = {}

    # --- control ------------------------------------------------------------------------------

    def command(self, doc):
        with self.lock:
            if doc["cmd"] == "upstream":
                self.upstream = doc["address"]
            elif doc["cmd"] == "queue":
                self.queues.setdefault((doc["method"], doc["path"]), []).extend(doc["actions"])
            elif doc["cmd"] == "release":
                self.held.pop(doc["n"]).set()
            elif doc["cmd"] != "status":
                return {"error": "unknown command %r" % doc["cmd"]}
            return {"log": list(self.log), "held": sorted(self.held),
                    "queued": {f"{m} {p}": q for (m, p), q in self.queues.items() if q}}

    def serve_control(self, sock):
        while True:
            conn, dummy = sock.accept()
            with conn:
                line = conn.makefile("rb").readline()
                conn.sendall(json.dumps(self.command(json.loads(line))).encode() + b"\n")

    # --- traffic ------------------------------------------------------------------------------

    def serve(self, sock):
        while True:
            conn, dummy = sock.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, raw):
        try:
            conn = self.server_tls.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        with conn:
            try:
                request, method, path = read_request(conn)
            except (OSError, ValueError):
                return
            with self.lock:
                queue = self.queues.get((method, path.split("?", 1)[0]), [])
                action = queue.pop(0) if queue else "pass"
                entry = {"n": len(self.log) + 1, "method": method, "path": path, "action": action, "status": None}
                self.log.append(entry)
                if action == "hold":
                    released = self.held[entry["n"]] = threading.Event()
            if action == "hold":
                released.wait(GIVE_UP)
                action = "pass"
            if action == "500":
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(CANNED_500), CANNED_500))
                entry["status"] = 500
            elif action == "drop":
                pass
            elif action == "hang":
                wait_for_close(conn)
            elif action in ("pass", "late"):
                answer = self.forward(request)
                entry["status"] = status_of(answer)
                if answer is None:
                    entry["status"] = "upstream down"
                elif action == "late":
                    wait_for_close(conn)
                else:
                    conn.sendall(answer)

    def forward(self, request):
        with self.lock:
            upstream = self.upstream
        host, port = upstream.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=30) as raw:
                with self.client_tls.wrap_socket(raw, server_hostname=host) as tls:
                    tls.sendall(request)
                    chunks = []
                    while True:
                        chunk = tls.recv(65536)
                        if not chunk:
                            return b"".join(chunks)
                        chunks.append(chunk)
        except (OSError, ssl.SSLError):
            return None


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("closed before the request head")
        data += chunk
    head, dummy, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, dummy = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, dummy, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("closed before the request body")
        body += chunk
    return head + b"\r\n\r\n" + body, method, path


def status_of(answer):
    try:
        return int(answer.split(b" ", 2)[1])
    except (AttributeError, IndexError, ValueError):
        return None


def wait_for_close(conn):
    conn.settimeout(1)
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline:
        try:
            if not conn.recv(4096):
                return
        except socket.timeout:
            continue
        except (OSError, ssl.SSLError):
            return


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--state", required=True, help="where to write the ports once listening")
    args = parser.parse_args()
    proxy = Proxy(args.cert, args.key, args.ca)
    traffic = socket.create_server(("127.0.0.1", 0))
    control = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=proxy.serve_control, args=(control,), daemon=True).start()
    tmp = args.state + ".tmp"
    with open(tmp, "w") as handle:
        json.dump({"port": traffic.getsockname()[1], "control": control.getsockname()[1], "pid": os.getpid()}, handle)
    os.replace(tmp, args.state)
    try:
        proxy.serve(traffic)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
