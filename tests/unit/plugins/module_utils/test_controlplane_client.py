"""The control-plane client against a real control plane over HTTPS (and real closed/silent ports)."""
import datetime
import hashlib
import http.server
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from helpers.controlplane import ControlPlane

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient, ControlPlaneError, token_fingerprint)


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    cp = ControlPlane(tmp_path_factory.mktemp("cp") / "data")
    cp.init()
    cp.set_profile("dev", {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "x\n"}]})
    cp.start()
    cp.ca_pem = cp.ca_path.read_text()
    yield cp
    cp.stop()


def new_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    cert = (_builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _builder(subject, issuer, public_key):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)))


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class FaultServer:
    """A real HTTPS server (its own CA, a certificate for one DNS name) answering fixed faults."""

    ROUTES = {
        "/redirect": (302, {"Location": "https://example.invalid/"}, b""),
        "/html-error": (502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"),
        "/busy": (429, {"Retry-After": "7", "Content-Type": "application/json"},
                  b'{"error": {"code": "rate_limited", "message": "slow down"}}'),
        "/not-json": (200, {"Content-Type": "application/json"}, b"not json"),
        "/echo-token": (401, {"Content-Type": "application/json"},
                        b'{"error": {"code": "unauthorized", "message": "bad token secret-run-token-value"}}'),
    }

    def __init__(self, tmp_path, dns_name):
        ca_key, ca = new_ca()
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]), ca.subject,
                         key.public_key())
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
                # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a leaf must name its issuer's key.
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
        cert_file.write_text(pem(leaf))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self.ca_pem = pem(ca)
        routes = self.ROUTES

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                status, headers, body = routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_file), str(key_file))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def faults(tmp_path):
    server = FaultServer(tmp_path, "localhost")
    yield server
    server.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fingerprint_is_sha256_of_the_token_text():
    assert token_fingerprint("abc") == hashlib.sha256(b"abc").hexdigest()
    assert token_fingerprint("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_json_in_and_out(cp):
    client = ControlPlaneClient(cp.url + "/", cp.ca_pem, timeout=10)
    jwks = client.get("/.well-known/jwks.json")
    assert jwks["keys"] and jwks["keys"][0]["kty"] == "RSA"
    token = cp.mint("dev", "alice")
    answer = client.post("/v1/tokens/validate", {"token": token})
    assert answer["valid"] is True and answer["fingerprint"] == token_fingerprint(token)


def test_error_bodies_map_to_status_code_and_message(cp):
    client = ControlPlaneClient(cp.url, cp.ca_pem, timeout=10)
    with pytest.raises(ControlPlaneError) as e:
        client.post("/v1/tokens/validate", {"token": "garbage-token-value"})
    assert e.value.status == 401 and e.value.code == "token_malformed"
    assert str(e.value) == "token_malformed: " + e.value.message
    assert "garbage-token-value" not in str(e.value)

    with pytest.raises(ControlPlaneError) as e:
        client.get("/v1/no-such-route")
    assert (e.value.status, e.value.code) == (404, "not_found")

    with pytest.raises(ControlPlaneError) as e:
        client.post("/v1/audit/events", {"events": []}, bearer="not-a-run-token")
    assert e.value.status == 401 and "not-a-run-token" not in str(e.value)

    token = cp.mint("dev", "alice")
    body = {"token": token, "machine": {"id": "m", "hostname": "h", "user": "u"}, "machine_secret_hash": "1" * 64}
    client.post("/v1/tokens/redeem", body)
    body["machine_secret_hash"] = "2" * 64
    with pytest.raises(ControlPlaneError) as e:
        client.post("/v1/tokens/redeem", body)
    assert (e.value.status, e.value.code) == (409, "already_redeemed") and token not in str(e.value)


def test_closed_port_is_unreachable():
    client = ControlPlaneClient("https://127.0.0.1:%d" % free_port(), None, timeout=5)
    with pytest.raises(ControlPlaneError) as e:
        client.get("/.well-known/jwks.json")
    assert (e.value.status, e.value.code) == (0, "unreachable")
    assert str(e.value).startswith("unreachable: GET https://127.0.0.1:")


def test_a_silent_server_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the handshake; nobody ever answers the TLS hello
        client = ControlPlaneClient("https://127.0.0.1:%d" % listener.getsockname()[1], None, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(ControlPlaneError) as e:
            client.get("/")
        assert time.monotonic() - started < 5
    assert (e.value.status, e.value.code) == (0, "unreachable") and "timed out" in e.value.message


def test_tls_is_always_verified(cp):
    with pytest.raises(ControlPlaneError) as e:
        ControlPlaneClient(cp.url, pem(new_ca()[1]), timeout=5).get("/.well-known/jwks.json")
    assert e.value.code == "unreachable" and "certificate verification failed" in e.value.message
    # The system trust store does not know the control plane's private CA either.
    with pytest.raises(ControlPlaneError) as e:
        ControlPlaneClient(cp.url, None, timeout=5).get("/.well-known/jwks.json")
    assert "certificate verification failed" in e.value.message


def test_hostname_is_checked(faults):
    # The certificate chains to the given CA but names only "localhost".
    with pytest.raises(ControlPlaneError) as e:
        ControlPlaneClient("https://127.0.0.1:%d" % faults.port, faults.ca_pem, 5).get("/busy")
    assert e.value.code == "unreachable" and "certificate verification failed" in e.value.message
    with pytest.raises(ControlPlaneError) as e:
        ControlPlaneClient("https://localhost:%d" % faults.port, faults.ca_pem, 5).get("/busy")
    assert (e.value.status, e.value.code, e.value.message) == (429, "rate_limited", "slow down")


def test_faults_are_reported_clearly(faults):
    client = ControlPlaneClient("https://localhost:%d" % faults.port, faults.ca_pem, 5)
    with pytest.raises(ControlPlaneError) as e:
        client.get("/busy")
    assert e.value.retry_after == 7 and client.retry_after == 7
    with pytest.raises(ControlPlaneError) as e:
        client.post("/redirect", {"token": "a-provisioning-token"})
    assert (e.value.status, e.value.code) == (302, "redirect_refused")
    with pytest.raises(ControlPlaneError) as e:
        client.get("/html-error")
    assert (e.value.status, e.value.code) == (502, "http_502") and "<html>" not in e.value.message
    with pytest.raises(ControlPlaneError) as e:
        client.get("/not-json")
    assert (e.value.status, e.value.code) == (200, "bad_response")
    with pytest.raises(ControlPlaneError) as e:
        client.post("/echo-token", {"events": []}, bearer="secret-run-token-value")
    assert e.value.message == "bad token <redacted>"


def test_only_https_urls_and_valid_cas():
    with pytest.raises(ControlPlaneError) as e:
        ControlPlaneClient("http://127.0.0.1:1")
    assert e.value.code == "invalid_url"
    with pytest.raises(ControlPlaneError) as e:
        ControlPlaneClient("https://127.0.0.1:1", "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    assert e.value.code == "invalid_ca"
