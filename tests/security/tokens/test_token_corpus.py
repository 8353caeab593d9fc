"""A corpus of hostile and malformed tokens, each refused with its expected reason by both sides.

Every token is made with the real control plane's own signing key (or the attacker's, where that is
the point), so that exactly one thing is wrong with it. Each case runs against:

- the collection's ``verify_token``, with a JWKS cache fetching the real JWKS over verified HTTPS;
- the collection's ``token_verify`` action, through a real ``ansible-playbook``;
- the control plane's ``POST /v1/tokens/validate`` and ``POST /v1/tokens/redeem``.

The last rows are controls: sound tokens that were never minted. The collection accepts them locally
and the control plane's edge check passes them on to the database, which does not know them; that
shows the corpus refuses the defect and not simply everything.
"""
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._jwks import JwksCache, JwksError
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._tokens import (
    TokenRefused,
    verify_token,
)
from helpers.controlplane import ControlPlane
from helpers.e2e import HOST_PYTHON, ansible_env, write_secret_vars

from . import _kit
from ._kit import ISSUER, LEEWAY, PROVISION_AUD, PROVISION_TYP, RUN_AUD, RUN_TYP

ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
PROFILE = {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "export EDITOR=vim\n"}]}
DROP = object()

# Collection reason -> control plane (status, code, message fragment), unless a case says otherwise.
CP_FOR = {
    "bad_algorithm": (401, "token_invalid", "RS256 only"),
    "malformed": (401, "token_malformed", ""),
    "bad_kid": (401, "token_malformed", "no valid kid"),
    "wrong_type": (401, "token_wrong_type", "token is needed here"),
    "unknown_key": (401, "token_invalid", "unknown signing key"),
    "bad_signature": (401, "token_invalid", "bad signature"),
    "expired": (401, "token_expired", "expired at"),
    "not_yet_valid": (401, "token_not_yet_valid", "not valid yet"),
    "ttl_too_long": (401, "token_invalid", "lifetime exceeds"),
    "missing_claim": (401, "token_malformed", "lacks the claim"),
    "bad_claim": (401, "token_malformed", "must be"),
    "wrong_audience": (401, "token_wrong_audience", "audience"),
    "wrong_issuer": (401, "token_wrong_issuer", "not issued by"),
    "too_large": (413, "payload_too_large", "at most 8192 bytes"),
}
NOT_MINTED = (401, "token_invalid", "no such token was minted here")


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_uint(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def public_jwk(key, kid):
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64u_uint(numbers.n),
            "e": b64u_uint(numbers.e)}


def attacker_cert_der():
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bootstrap-saas")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ATTACKER.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2040, 1, 1)).sign(ATTACKER, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


class Forge:
    """Builds tokens against one control plane: its key and kid, the attacker's key, a genuine run token."""

    def __init__(self, key, kid, run_token, listener_url):
        self.key, self.kid, self.run_token, self.listener = key, kid, run_token, listener_url
        self.public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_ssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                        serialization.PublicFormat.OpenSSH)
        self.public_jwk_text = json.dumps(public_jwk(key, kid)).encode()

    def header(self, **changes):
        h = {"alg": "RS256", "typ": PROVISION_TYP, "kid": self.kid}
        h.update(changes)
        return {k: v for k, v in h.items() if v is not DROP}

    @staticmethod
    def claims(**changes):
        c = _kit.claims()
        c.update(changes)
        return {k: v for k, v in c.items() if v is not DROP}

    def sign(self, signing_input, alg="RS256", key=None, secret=None):
        data = signing_input.encode()
        key = key or self.key
        if alg == "RS256":
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if alg == "PS256":
            return key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        if alg == "ES256":
            return EC_KEY.sign(data, ec.ECDSA(hashes.SHA256()))
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        return hmac.new(secret, data, digest).digest()

    def make(self, h=None, c=None, alg="RS256", key=None, secret=None, signature=None, raw_header=None,
             raw_payload=None):
        if raw_header is None:
            raw_header = json.dumps(self.header() if h is None else h).encode()
        if raw_payload is None:
            raw_payload = json.dumps(self.claims() if c is None else c).encode()
        head, body = b64u(raw_header), b64u(raw_payload)
        signing_input = head + "." + body
        if signature is None:
            signature = b64u(self.sign(signing_input, alg, key, secret))
        return signing_input + "." + signature

    def unsigned(self, alg):
        return self.make(h=self.header(alg=alg), signature="")

    def with_payload(self, text):
        return self.make(raw_payload=text.encode() if isinstance(text, str) else text)

    def non_canonical_signature(self):
        head, body, sig = self.make().rsplit(".", 2)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return "%s.%s.%s" % (head, body, sig[:-1] + alphabet[alphabet.index(sig[-1]) | 0b0001])

    def tampered_payload(self):
        head, _body, sig = self.make().split(".")
        return "%s.%s.%s" % (head, b64u(json.dumps(self.claims(sub="mallory")).encode()), sig)

    def tampered_signature(self):
        head, body, sig = self.make().split(".")
        raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
        raw[17] ^= 0x01
        return "%s.%s.%s" % (head, body, b64u(bytes(raw)))

    def swapped_header(self):
        """A genuine token's signature under another (harmless looking) header: it covers the header too."""
        _head, body, sig = self.make().split(".")
        return "%s.%s.%s" % (b64u(json.dumps(self.header(note="x")).encode()), body, sig)

    def json_claims(self, text_transform):
        return self.with_payload(text_transform(json.dumps(self.claims())))


def now():
    return int(time.time())


# (id, builder(forge), reason of the collection's verify_token or None when it accepts the token,
#  control plane (status, code, fragment) or None for CP_FOR[reason]).
CASES = [
    ("alg-none", lambda f: f.unsigned("none"), "bad_algorithm", None),
    ("alg-None", lambda f: f.unsigned("None"), "bad_algorithm", None),
    ("alg-NONE", lambda f: f.unsigned("NONE"), "bad_algorithm", None),
    ("alg-nOnE", lambda f: f.unsigned("nOnE"), "bad_algorithm", None),
    ("alg-none-with-rs256-signature", lambda f: f.make(h=f.header(alg="none")), "bad_algorithm", None),
    ("alg-missing", lambda f: f.make(h=f.header(alg=DROP)), "bad_algorithm", None),
    ("alg-empty", lambda f: f.make(h=f.header(alg="")), "bad_algorithm", None),
    ("alg-lowercase", lambda f: f.make(h=f.header(alg="rs256")), "bad_algorithm", None),
    ("alg-trailing-space", lambda f: f.make(h=f.header(alg="RS256 ")), "bad_algorithm", None),
    ("alg-list", lambda f: f.make(h=f.header(alg=["RS256"])), "bad_algorithm", None),
    ("hs256-public-key-pem", lambda f: f.make(h=f.header(alg="HS256"), alg="HS256", secret=f.public_pem),
     "bad_algorithm", None),
    ("hs256-public-key-ssh", lambda f: f.make(h=f.header(alg="HS256"), alg="HS256", secret=f.public_ssh),
     "bad_algorithm", None),
    ("hs256-public-key-jwk", lambda f: f.make(h=f.header(alg="HS256"), alg="HS256", secret=f.public_jwk_text),
     "bad_algorithm", None),
    ("hs384-public-key-pem", lambda f: f.make(h=f.header(alg="HS384"), alg="HS384", secret=f.public_pem),
     "bad_algorithm", None),
    ("hs512-public-key-pem", lambda f: f.make(h=f.header(alg="HS512"), alg="HS512", secret=f.public_pem),
     "bad_algorithm", None),
    ("ps256-with-rsa-kid", lambda f: f.make(h=f.header(alg="PS256"), alg="PS256"), "bad_algorithm", None),
    ("es256-with-rsa-kid", lambda f: f.make(h=f.header(alg="ES256"), alg="ES256"), "bad_algorithm", None),
    ("rs512", lambda f: f.make(h=f.header(alg="RS512")), "bad_algorithm", None),
    ("two-segments", lambda f: ".".join(f.make().split(".")[:2]), "malformed", None),
    ("four-segments", lambda f: f.make() + ".AAAA", "malformed", None),
    ("jwe-shaped", lambda f: b64u(b'{"alg":"dir","enc":"A256GCM"}') + "..AAAA.AAAA.AAAA", "malformed", None),
    ("empty", lambda f: "", "malformed", (400, "bad_request", "non-empty string")),
    ("header-not-json", lambda f: f.make(raw_header=b"{not json"), "malformed", None),
    ("header-json-array", lambda f: f.make(raw_header=b'["RS256"]'), "malformed", None),
    ("padded-base64", lambda f: f.make().replace(".", "=.", 1), "malformed", None),
    ("inner-space", lambda f: f.make().replace(".", ". ", 1), "malformed", None),
    ("non-canonical-signature-bits", lambda f: f.non_canonical_signature(), "malformed", None),
    ("duplicate-alg-none-last", lambda f: f.make(raw_header=(
        '{"alg":"RS256","typ":"%s","kid":"%s","alg":"none"}' % (PROVISION_TYP, f.kid)).encode()), "malformed", None),
    ("duplicate-alg-rs256-last", lambda f: f.make(raw_header=(
        '{"alg":"none","typ":"%s","kid":"%s","alg":"RS256"}' % (PROVISION_TYP, f.kid)).encode()), "malformed", None),
    ("non-ascii", lambda f: f.make() + "\u00e9", "malformed", None),
    ("crit-header", lambda f: f.make(h=f.header(crit=["exp"], exp=1)), "malformed", None),
    ("b64-false-unencoded-payload", lambda f: f.make(h=f.header(b64=False)), "malformed", None),
    ("payload-json-array", lambda f: f.with_payload('["alice"]'), "malformed", None),
    ("payload-not-json", lambda f: f.with_payload("alice"), "malformed", None),
    ("payload-duplicate-sub", lambda f: f.json_claims(lambda t: t[:-1] + ', "sub": "mallory"}'), "malformed", None),
    ("no-signature", lambda f: f.make(signature=""), "bad_signature", None),
    ("typ-run-on-provisioning-claims", lambda f: f.make(h=f.header(typ=RUN_TYP)), "wrong_type", None),
    ("typ-missing", lambda f: f.make(h=f.header(typ=DROP)), "wrong_type", None),
    ("typ-JWT", lambda f: f.make(h=f.header(typ="JWT")), "wrong_type", None),
    ("typ-uppercase", lambda f: f.make(h=f.header(typ=PROVISION_TYP.upper())), "wrong_type", None),
    ("typ-application-prefix", lambda f: f.make(h=f.header(typ="application/" + PROVISION_TYP)), "wrong_type", None),
    ("genuine-run-token-as-provisioning", lambda f: f.run_token, "wrong_type", None),
    ("kid-missing", lambda f: f.make(h=f.header(kid=DROP)), "bad_kid", None),
    ("kid-empty", lambda f: f.make(h=f.header(kid="")), "bad_kid", None),
    ("kid-path-traversal", lambda f: f.make(h=f.header(kid="../../keys/" + f.kid)), "bad_kid", None),
    ("kid-65-chars", lambda f: f.make(h=f.header(kid="k" * 65)), "bad_kid", None),
    ("kid-number", lambda f: f.make(h=f.header(kid=1)), "bad_kid", None),
    ("kid-trailing-newline", lambda f: f.make(h=f.header(kid=f.kid + "\n")), "bad_kid", None),
    ("kid-sql", lambda f: f.make(h=f.header(kid="k1' OR '1'='1")), "bad_kid", None),
    ("too-large", lambda f: f.make(c=f.claims(pad="x" * 9000)), "too_large", None),
    ("unknown-kid", lambda f: f.make(h=f.header(kid="sk-unknown")), "unknown_key", None),
    ("jwk-header-attacker-key", lambda f: f.make(h=f.header(kid="attacker", jwk=public_jwk(ATTACKER, "attacker")),
                                                 key=ATTACKER), "unknown_key", None),
    ("jku-header-attacker-jwks", lambda f: f.make(h=f.header(kid="attacker", jku=f.listener + "/jwks.json"),
                                                  key=ATTACKER), "unknown_key", None),
    ("x5u-header-attacker-cert", lambda f: f.make(h=f.header(kid="attacker", x5u=f.listener + "/cert.pem"),
                                                  key=ATTACKER), "unknown_key", None),
    ("jwk-header-real-kid-attacker-key", lambda f: f.make(h=f.header(jwk=public_jwk(ATTACKER, f.kid)), key=ATTACKER),
     "bad_signature", None),
    ("x5c-header-real-kid-attacker-key", lambda f: f.make(
        h=f.header(x5c=[base64.b64encode(attacker_cert_der()).decode()]), key=ATTACKER), "bad_signature", None),
    ("attacker-key-real-kid", lambda f: f.make(key=ATTACKER), "bad_signature", None),
    ("tampered-payload", lambda f: f.tampered_payload(), "bad_signature", None),
    ("tampered-signature", lambda f: f.tampered_signature(), "bad_signature", None),
    ("header-swapped-under-signature", lambda f: f.swapped_header(), "bad_signature", None),
    ("expired", lambda f: f.make(c=f.claims(iat=now() - 700, nbf=now() - 700, exp=now() - LEEWAY - 10)),
     "expired", None),
    ("expired-negative-exp", lambda f: f.make(c=f.claims(iat=-600, nbf=-600, exp=-1)), "expired", None),
    ("nbf-in-future", lambda f: f.make(c=f.claims(nbf=now() + 600, exp=now() + 1200)), "not_yet_valid", None),
    ("iat-in-future", lambda f: f.make(c=f.claims(iat=now() + 600, nbf=now(), exp=now() + 1200)),
     "not_yet_valid", None),
    ("ttl-over-maximum", lambda f: f.make(c=f.claims(exp=now() + 86401)), "ttl_too_long", None),
    ("backdated-iat-stretches-lifetime", lambda f: f.make(c=f.claims(iat=now() - 90000, nbf=now() - 90000)),
     "ttl_too_long", None),
    ("missing-exp", lambda f: f.make(c=f.claims(exp=DROP)), "missing_claim", None),
    ("missing-aud", lambda f: f.make(c=f.claims(aud=DROP)), "missing_claim", None),
    ("missing-jti", lambda f: f.make(c=f.claims(jti=DROP)), "missing_claim", None),
    ("missing-sub", lambda f: f.make(c=f.claims(sub=DROP)), "missing_claim", None),
    ("missing-iat", lambda f: f.make(c=f.claims(iat=DROP)), "missing_claim", None),
    ("missing-iss", lambda f: f.make(c=f.claims(iss=DROP)), "missing_claim", None),
    ("missing-profile", lambda f: f.make(c=f.claims(profile=DROP)), None,
     (401, "token_malformed", "lacks the claim 'profile'")),
    ("string-exp", lambda f: f.make(c=f.claims(exp=str(now() + 600))), "bad_claim", None),
    ("bool-exp", lambda f: f.make(c=f.claims(exp=True)), "bad_claim", None),
    ("nan-exp", lambda f: f.json_claims(lambda t: t.replace('"exp": %d' % json.loads(t)["exp"], '"exp": NaN')),
     "bad_claim", None),
    ("infinity-exp", lambda f: f.json_claims(lambda t: t.replace('"exp": %d' % json.loads(t)["exp"],
                                                                 '"exp": Infinity')), "bad_claim", None),
    ("string-iat", lambda f: f.make(c=f.claims(iat="yesterday")), "bad_claim", None),
    ("string-nbf", lambda f: f.make(c=f.claims(nbf="0")), "bad_claim", None),
    ("empty-sub", lambda f: f.make(c=f.claims(sub="")), "bad_claim", None),
    ("list-sub", lambda f: f.make(c=f.claims(sub=["alice"])), "bad_claim", None),
    ("numeric-jti", lambda f: f.make(c=f.claims(jti=7)), "bad_claim", None),
    ("list-iss", lambda f: f.make(c=f.claims(iss=[ISSUER])), "bad_claim", None),
    ("numeric-profile", lambda f: f.make(c=f.claims(profile=1)), "bad_claim", None),
    ("aud-number", lambda f: f.make(c=f.claims(aud=1)), "bad_claim", None),
    ("aud-null", lambda f: f.make(c=f.claims(aud=None)), "bad_claim", None),
    ("aud-other", lambda f: f.make(c=f.claims(aud="someone-else")), "wrong_audience", None),
    ("aud-run-on-provisioning", lambda f: f.make(c=f.claims(aud=RUN_AUD)), "wrong_audience", None),
    ("aud-list-without-ours", lambda f: f.make(c=f.claims(aud=["a", RUN_AUD])), "wrong_audience", None),
    ("aud-superstring", lambda f: f.make(c=f.claims(aud=PROVISION_AUD + "-evil")), "wrong_audience", None),
    ("aud-substring", lambda f: f.make(c=f.claims(aud="bootstrap-saas")), "wrong_audience", None),
    ("aud-list-of-substring", lambda f: f.make(c=f.claims(aud=["provision"])), "wrong_audience", None),
    ("aud-case", lambda f: f.make(c=f.claims(aud=PROVISION_AUD.upper())), "wrong_audience", None),
    ("aud-empty-list", lambda f: f.make(c=f.claims(aud=[])), "wrong_audience", None),
    ("iss-other", lambda f: f.make(c=f.claims(iss="evil")), "wrong_issuer", None),
    ("iss-superstring", lambda f: f.make(c=f.claims(iss=ISSUER + "-evil")), "wrong_issuer", None),
    ("iss-substring", lambda f: f.make(c=f.claims(iss="bootstrap")), "wrong_issuer", None),
    ("iss-trailing-space", lambda f: f.make(c=f.claims(iss=ISSUER + " ")), "wrong_issuer", None),
    # Controls: sound tokens that were never minted pass every check before the database.
    ("control-plain", lambda f: f.make(), None, NOT_MINTED),
    ("control-aud-list-with-ours", lambda f: f.make(c=f.claims(aud=["other", PROVISION_AUD])), None, NOT_MINTED),
    ("control-expired-within-leeway", lambda f: f.make(c=f.claims(exp=now() - 1)), None, NOT_MINTED),
    ("control-nbf-within-leeway", lambda f: f.make(c=f.claims(nbf=now() + 20)), None, NOT_MINTED),
    ("control-no-nbf", lambda f: f.make(c=f.claims(nbf=DROP)), None, NOT_MINTED),
    ("control-float-times", lambda f: f.make(c=f.claims(iat=now() + 0.5, exp=now() + 600.5)), None, NOT_MINTED),
    ("control-max-ttl-exactly", lambda f: f.make(c=f.claims(exp=f.claims()["iat"] + 86400)), None, NOT_MINTED),
    ("control-jku-x5u-ignored", lambda f: f.make(h=f.header(jku=f.listener, x5u=f.listener)), None, NOT_MINTED),
]
IDS = [case[0] for case in CASES]
HOSTILE = [case for case in CASES if not case[0].startswith("control-")]


def expected_cp(case):
    _name, _build, reason, cp = case
    return cp if cp is not None else CP_FOR[reason]


def expected_token_verify(case):
    """token_verify reports the local reason, or the control plane's code once the local checks pass.

    An empty token is an unset variable rather than a malformed token: the action says it is missing.
    """
    if case[0] == "empty":
        return "missing"
    return case[2] if case[2] is not None else expected_cp(case)[1]


class Listener:
    """A real HTTP listener standing for the attacker's key server: any request means a URL was followed."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                body = json.dumps({"keys": [public_jwk(ATTACKER, "attacker")]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("corpus")
    cp = ControlPlane(work / "cp")
    cp.init()
    cp.set_profile("dev", PROFILE)
    listener = Listener()
    with cp:
        cp.start("--rate-limit", "0")
        redeemed = _kit.redeem(cp, _kit.mint(cp), _kit.secret_hash(), "corpus")
        assert redeemed.status == 200, redeemed
        kid, key = _kit.signing_key(cp)
        yield {"cp": cp, "work": work, "listener": listener,
               "forge": Forge(key, kid, redeemed.body["run_token"], listener.url)}
    listener.close()
    assert listener.hits == [], "a header URL was followed: %r" % listener.hits


def assert_not_echoed(token, text):
    if len(token) >= 16:
        assert token not in text
    for part in token.split("."):
        if len(part) > 24:
            assert part not in text, "a token segment is echoed"


def test_corpus_is_large_enough():
    assert len(HOSTILE) >= 40
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_collection_verify_token(world, case):
    name, build, reason, _cp = case
    cp = world["cp"]
    client = ControlPlaneClient(cp.url, ca_pem=cp.ca_path.read_text(), timeout=30)
    fetches = []
    cache = JwksCache(lambda: fetches.append(1) or client.get("/.well-known/jwks.json"))
    token = build(world["forge"])
    if reason is None:
        claims = verify_token(token, cache, PROVISION_TYP, ISSUER, PROVISION_AUD)
        assert claims["iss"] == ISSUER
        return
    with pytest.raises(TokenRefused) as refused:
        verify_token(token, cache, PROVISION_TYP, ISSUER, PROVISION_AUD)
    assert refused.value.reason == reason, str(refused.value)
    assert str(refused.value).startswith("token refused (%s): " % reason)
    assert_not_echoed(token, str(refused.value))
    if reason in ("too_large", "bad_kid", "bad_algorithm", "wrong_type", "malformed") and "payload" not in name:
        assert fetches == [], "refused before any key lookup"


@pytest.mark.parametrize("endpoint", ["validate", "redeem"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_control_plane_endpoint(world, case, endpoint):
    cp = world["cp"]
    token = case[1](world["forge"])
    if endpoint == "validate":
        answer = _kit.validate(cp, token)
    else:
        answer = _kit.redeem(cp, token, _kit.secret_hash(), "corpus-" + case[0][:40])
    status, code, fragment = expected_cp(case)
    assert (answer.status, answer.code) == (status, code), answer
    assert fragment in answer.message, answer.message
    assert_not_echoed(token, json.dumps(answer.body))


def test_token_verify_action_through_ansible(world, tmp_path):
    """The real token_verify action, one ansible-playbook run looping over the whole corpus."""
    cp, forge = world["cp"], world["forge"]
    tokens = [case[1](forge) for case in CASES]
    results = tmp_path / "results.json"
    # The loop runs over indexes, so that nothing but the action itself could show a token.
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "verify", "bootstrap_saas.provisioning.token_verify": {
            "url": "{{ cp_url }}", "ca_path": "{{ cp_ca }}", "token": "{{ corpus[item] }}"},
         "loop": "{{ range(corpus | length) | list }}", "register": "out", "ignore_errors": True},
        {"ansible.builtin.copy": {"content": "{{ out.results | to_json }}", "dest": str(results)}},
    ]}]
    book = tmp_path / "corpus.yml"
    book.write_text(yaml.safe_dump(play, sort_keys=False))
    varfile = write_secret_vars(tmp_path / "vars.json", {"corpus": tokens, "cp_url": cp.url, "cp_ca": str(cp.ca_path)})
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=%s" % HOST_PYTHON, "-e", "@%s" % varfile, str(book)]
    proc = subprocess.run(command, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=240,
                          cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    got = {result["item"]: result for result in json.loads(results.read_text())}
    assert sorted(got) == list(range(len(CASES)))
    for index, (case, token) in enumerate(zip(CASES, tokens)):
        result = got[index]
        assert result.get("failed") is True, (case[0], result)
        assert result["reason"] == expected_token_verify(case), (case[0], result["msg"])
        assert_not_echoed(token, json.dumps(result))
        if token:
            assert result["fingerprint"] == _kit.fingerprint(token)
    output = proc.stdout + proc.stderr
    for token in tokens:
        assert_not_echoed(token, output)


def test_corpus_consumed_and_validated_nothing(world):
    """Refusals before the database leave no run, no validation and no redeem refusal behind."""
    events = world["cp"].audit()
    assert [e for e in events if e["type"] in ("token.validated", "token.redeem_refused")] == []
    started = [e for e in events if e["type"] == "run.started"]
    assert len(started) == 1 and started[0]["data"]["machine"]["id"] == "corpus"


def test_unknown_kid_flood_is_one_jwks_fetch_on_the_server(world):
    """200 tokens with random kids against a warm cache: the real JWKS endpoint sees no extra request."""
    cp, forge = world["cp"], world["forge"]
    client = ControlPlaneClient(cp.url, ca_pem=cp.ca_path.read_text(), timeout=30)
    cache = JwksCache(lambda: client.get("/.well-known/jwks.json"), min_refetch_interval=60)
    before = cp.log_text().count("GET /.well-known/jwks.json 200")
    verify_token(forge.make(), cache, PROVISION_TYP, ISSUER, PROVISION_AUD)
    for dummy in range(200):
        with pytest.raises(TokenRefused) as refused:
            verify_token(forge.make(h=forge.header(kid="sk-" + uuid.uuid4().hex)), cache, PROVISION_TYP, ISSUER,
                         PROVISION_AUD)
        assert refused.value.reason == "unknown_key"
    deadline = time.monotonic() + 5
    while cp.log_text().count("GET /.well-known/jwks.json 200") < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert cp.log_text().count("GET /.well-known/jwks.json 200") == before + 1


def test_jwks_endpoint_down_fails_closed(world):
    """The documented choice: no JWKS, no verification. Once the cached copy is stale and the endpoint
    cannot be reached (nothing listens there any more), a genuine token is refused."""
    cp = world["cp"]
    token = _kit.mint(cp)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_url = "https://127.0.0.1:%d" % dead.getsockname()[1]
    dead.close()
    where = {"url": cp.url}

    def fetch():
        return ControlPlaneClient(where["url"], ca_pem=cp.ca_path.read_text(), timeout=5).get("/.well-known/jwks.json")

    cache = JwksCache(fetch, max_age=0.5, min_refetch_interval=0)
    assert verify_token(token, cache, PROVISION_TYP, ISSUER, PROVISION_AUD)["sub"] == "alice"
    where["url"] = dead_url
    time.sleep(0.6)  # the cached JWKS is now stale
    with pytest.raises(JwksError) as down:
        verify_token(token, cache, PROVISION_TYP, ISSUER, PROVISION_AUD)
    assert down.value.reason == "unavailable", str(down.value)
    assert "could not be fetched" in str(down.value) and "fail closed" in str(down.value)
    assert token not in str(down.value)
