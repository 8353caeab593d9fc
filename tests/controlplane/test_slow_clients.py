"""Clients that stop mid-request (slowloris), send absurd JSON or arrive all at once must not hurt the server."""
import json
import socket
import threading
import ssl
import time
import urllib.request

import pytest

from helpers.controlplane import ControlPlane


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    with ControlPlane(tmp_path_factory.mktemp("slow") / "data") as plane:
        plane.init()
        plane.start("--threads", "4", "--rate-limit", "0")
        yield plane


def _get(cp, path, timeout):
    context = ssl.create_default_context(cafile=str(cp.ca_path))
    with urllib.request.urlopen(cp.url + path, context=context, timeout=timeout) as answer:
        return answer.status


def test_stalled_request_bodies_release_their_threads_within_seconds(cp):
    context = ssl.create_default_context(cafile=str(cp.ca_path))
    host, port = cp.url.rsplit("/", 1)[1].split(":")
    stalled = []
    for dummy in range(8):  # twice as many as the server has threads
        raw = socket.create_connection((host, int(port)), timeout=5)
        conn = context.wrap_socket(raw, server_hostname=host)
        conn.sendall(b"POST /v1/tokens/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        stalled.append(conn)
    try:
        started = time.monotonic()
        assert _get(cp, "/.well-known/jwks.json", timeout=15) == 200
        assert time.monotonic() - started < 10   # the client timeout (3 s) frees the workers, not cheroot's 10 s
    finally:
        for conn in stalled:
            conn.close()


def test_json_nested_beyond_the_parser_is_a_400_not_a_500(cp):
    body = b"[" * 100000 + b"]" * 100000
    context = ssl.create_default_context(cafile=str(cp.ca_path))
    request = urllib.request.Request(cp.url + "/v1/tokens/validate", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=context, timeout=15)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["code"] == "bad_request"


def test_a_burst_of_new_connections_is_not_dropped(cp):
    # A fleet that starts at once opens many connections together. With a short listen backlog the
    # kernel drops the SYNs that do not fit and each of those clients waits a second (the SYN
    # retransmission timeout) before it is even connected.
    host, port = cp.url.rsplit("/", 1)[1].split(":")
    clients = 64
    ready = threading.Barrier(clients)
    took, sockets, lock = [], [], threading.Lock()

    def connect():
        ready.wait()
        started = time.monotonic()
        conn = socket.create_connection((host, int(port)), timeout=10)
        with lock:
            took.append(time.monotonic() - started)
            sockets.append(conn)

    threads = [threading.Thread(target=connect) for dummy in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for conn in sockets:
        conn.close()
    assert len(took) == clients
    assert max(took) < 0.9, "slowest connect %.2f s: SYNs were dropped" % max(took)
