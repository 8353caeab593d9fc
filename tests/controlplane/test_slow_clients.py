"""Clients that stop mid-request (slowloris) or send absurd JSON must not take the server down."""
import json
import socket
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
