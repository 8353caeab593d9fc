"""verify_token against a corpus of hostile and malformed tokens, plus interop with jwcrypto and PyJWT."""
import base64
import hashlib
import hmac
import http.server
import json
import secrets
import threading
import time
import uuid

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from jwcrypto import jwk as jwc_jwk, jwt as jwc_jwt

from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._jwks import JwksCache
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._tokens import (
    PROVISION_AUDIENCE,
    PROVISION_TYP,
    RUN_AUDIENCE,
    RUN_TYP,
    TokenRefused,
    verify_token,
)

NOW = 1_800_000_000
ISSUER = "bootstrap-saas"

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
PUBLIC_SSH = KEY.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_uint(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def public_jwk(key, kid):
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64u_uint(numbers.n), "e": b64u_uint(numbers.e)}


JWKS = {"keys": [public_jwk(KEY, "k1")]}
PUBLIC_JWK_TEXT = json.dumps(JWKS["keys"][0]).encode()


class Source:
    def __init__(self, document=None):
        self.document = JWKS if document is None else document
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.document


def fresh_cache():
    source = Source()
    return JwksCache(source, clock=lambda: 0.0), source


def header(**changes):
    h = {"alg": "RS256", "typ": PROVISION_TYP, "kid": "k1"}
    h.update(changes)
    return {k: v for k, v in h.items() if v is not DROP}


def claims(**changes):
    c = {"iss": ISSUER, "aud": PROVISION_AUDIENCE, "sub": "alice", "jti": uuid.uuid4().hex,
         "iat": NOW, "nbf": NOW, "exp": NOW + 3600, "profile": "dev"}
    c.update(changes)
    return {k: v for k, v in c.items() if v is not DROP}


DROP = object()


def segment(obj):
    return b64u(obj if isinstance(obj, bytes) else json.dumps(obj).encode())


def sign(signing_input, alg="RS256", key=KEY, secret=None):
    data = signing_input.encode()
    if alg == "RS256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        return key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    if alg == "ES256":
        return EC_KEY.sign(data, ec.ECDSA(hashes.SHA256()))
    if alg.startswith("HS"):
        return hmac.new(secret, data, {"HS256": hashlib.sha256, "HS384": hashlib.sha384,
                                       "HS512": hashlib.sha512}[alg]).digest()
    raise AssertionError(alg)


def make(h=None, c=None, alg="RS256", key=KEY, secret=None, signature=None):
    h = header() if h is None else h
    c = claims() if c is None else c
    signing_input = segment(h) + "." + segment(c)
    if signature is None:
        signature = b64u(sign(signing_input, alg, key, secret))
    return signing_input + "." + signature


def with_signature_bits_changed(token):
    """Same signature bytes, non-canonical base64url (padding bits of the last character set)."""
    head, body, sig = token.rsplit(".", 2)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    return "%s.%s.%s" % (head, body, sig[:-1] + alphabet[last | 0b0001])


def tampered_payload():
    token = make()
    head, _body, sig = token.split(".")
    return "%s.%s.%s" % (head, segment(claims(sub="mallory")), sig)


def tampered_signature():
    head, body, sig = make().split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[17] ^= 0x01
    return "%s.%s.%s" % (head, body, b64u(bytes(raw)))


def huge():
    return make(c=claims(pad="x" * 9000))


def duplicate_alg():
    head = b64u(b'{"alg":"RS256","typ":"bs-provision+jwt","kid":"k1","alg":"none"}')
    signing_input = head + "." + segment(claims())
    return signing_input + "." + b64u(sign(signing_input))


def raw_payload(payload_bytes):
    signing_input = segment(header()) + "." + b64u(payload_bytes)
    return signing_input + "." + b64u(sign(signing_input))


def unsigned(alg):
    return segment(header(alg=alg)) + "." + segment(claims()) + "."


# (id, builder, expected reason). Builders run at test time so that each gets a fresh jti.
HOSTILE = [
    ("alg-none", lambda: unsigned("none"), "bad_algorithm"),
    ("alg-None", lambda: unsigned("None"), "bad_algorithm"),
    ("alg-NONE", lambda: unsigned("NONE"), "bad_algorithm"),
    ("alg-nOnE", lambda: unsigned("nOnE"), "bad_algorithm"),
    ("alg-none-with-signature", lambda: make(h=header(alg="none")), "bad_algorithm"),
    ("alg-missing", lambda: make(h=header(alg=DROP)), "bad_algorithm"),
    ("alg-empty", lambda: make(h=header(alg="")), "bad_algorithm"),
    ("alg-lowercase-rs256", lambda: make(h=header(alg="rs256")), "bad_algorithm"),
    ("alg-list", lambda: make(h=header(alg=["RS256"])), "bad_algorithm"),
    ("hs256-public-pem", lambda: make(h=header(alg="HS256"), alg="HS256", secret=PUBLIC_PEM), "bad_algorithm"),
    ("hs256-public-ssh", lambda: make(h=header(alg="HS256"), alg="HS256", secret=PUBLIC_SSH), "bad_algorithm"),
    ("hs256-public-jwk", lambda: make(h=header(alg="HS256"), alg="HS256", secret=PUBLIC_JWK_TEXT), "bad_algorithm"),
    ("hs384-public-pem", lambda: make(h=header(alg="HS384"), alg="HS384", secret=PUBLIC_PEM), "bad_algorithm"),
    ("hs512-public-pem", lambda: make(h=header(alg="HS512"), alg="HS512", secret=PUBLIC_PEM), "bad_algorithm"),
    ("ps256-rsa-kid", lambda: make(h=header(alg="PS256"), alg="PS256"), "bad_algorithm"),
    ("es256-rsa-kid", lambda: make(h=header(alg="ES256"), alg="ES256"), "bad_algorithm"),
    ("rs512", lambda: make(h=header(alg="RS512")), "bad_algorithm"),
    ("two-segments", lambda: ".".join(make().split(".")[:2]), "malformed"),
    ("four-segments", lambda: make() + ".AAAA", "malformed"),
    ("jwe-shaped-five-segments", lambda: "eyJhbGciOiJkaXIifQ..AAAA.AAAA.AAAA", "malformed"),
    ("empty", lambda: "", "malformed"),
    ("header-not-json", lambda: b64u(b"{not json") + "." + segment(claims()) + ".AAAA", "malformed"),
    ("header-json-array", lambda: segment(["RS256"]) + "." + segment(claims()) + ".AAAA", "malformed"),
    ("padded-base64", lambda: make().replace(".", "=.", 1), "malformed"),
    ("non-canonical-signature", lambda: with_signature_bits_changed(make()), "malformed"),
    ("duplicate-header-member", duplicate_alg, "malformed"),
    ("non-ascii", lambda: make() + "\u00e9", "malformed"),
    ("crit-header", lambda: make(h=header(crit=["exp"], exp=1)), "malformed"),
    ("payload-json-array", lambda: raw_payload(b'["alice"]'), "malformed"),
    ("payload-not-json", lambda: raw_payload(b"alice"), "malformed"),
    ("no-signature", lambda: make(signature=""), "bad_signature"),
    ("typ-run-as-provision", lambda: make(h=header(typ=RUN_TYP)), "wrong_type"),
    ("typ-missing", lambda: make(h=header(typ=DROP)), "wrong_type"),
    ("typ-JWT", lambda: make(h=header(typ="JWT")), "wrong_type"),
    ("typ-application-prefix", lambda: make(h=header(typ="application/" + PROVISION_TYP)), "wrong_type"),
    ("kid-missing", lambda: make(h=header(kid=DROP)), "bad_kid"),
    ("kid-empty", lambda: make(h=header(kid="")), "bad_kid"),
    ("kid-path-traversal", lambda: make(h=header(kid="../../etc/passwd")), "bad_kid"),
    ("kid-65-chars", lambda: make(h=header(kid="k" * 65)), "bad_kid"),
    ("kid-number", lambda: make(h=header(kid=1)), "bad_kid"),
    ("kid-trailing-newline", lambda: make(h=header(kid="k1\n")), "bad_kid"),
    ("kid-sql", lambda: make(h=header(kid="k1' OR '1'='1")), "bad_kid"),
    ("too-large", huge, "too_large"),
    ("unknown-kid", lambda: make(h=header(kid="k-unknown")), "unknown_key"),
    ("jwk-embedded-attacker-key", lambda: make(h=header(kid="attacker", jwk=public_jwk(OTHER_KEY, "attacker")),
                                               key=OTHER_KEY), "unknown_key"),
    ("jwk-embedded-known-kid", lambda: make(h=header(jwk=public_jwk(OTHER_KEY, "k1")), key=OTHER_KEY),
     "bad_signature"),
    ("other-key-same-kid", lambda: make(key=OTHER_KEY), "bad_signature"),
    ("tampered-payload", tampered_payload, "bad_signature"),
    ("tampered-signature", tampered_signature, "bad_signature"),
    ("expired", lambda: make(c=claims(iat=NOW - 7200, nbf=NOW - 7200, exp=NOW - 31)), "expired"),
    ("not-yet-valid-nbf", lambda: make(c=claims(nbf=NOW + 120)), "not_yet_valid"),
    ("issued-in-future", lambda: make(c=claims(iat=NOW + 120, nbf=NOW)), "not_yet_valid"),
    ("ttl-too-long", lambda: make(c=claims(exp=NOW + 86401)), "ttl_too_long"),
    ("missing-exp", lambda: make(c=claims(exp=DROP)), "missing_claim"),
    ("missing-aud", lambda: make(c=claims(aud=DROP)), "missing_claim"),
    ("missing-jti", lambda: make(c=claims(jti=DROP)), "missing_claim"),
    ("missing-sub", lambda: make(c=claims(sub=DROP)), "missing_claim"),
    ("missing-iat", lambda: make(c=claims(iat=DROP)), "missing_claim"),
    ("missing-iss", lambda: make(c=claims(iss=DROP)), "missing_claim"),
    ("string-exp", lambda: make(c=claims(exp=str(NOW + 3600))), "bad_claim"),
    ("bool-exp", lambda: make(c=claims(exp=True)), "bad_claim"),
    ("nan-exp", lambda: raw_payload(json.dumps(claims()).replace(str(NOW + 3600), "NaN").encode()), "bad_claim"),
    ("infinity-exp", lambda: raw_payload(json.dumps(claims()).replace(str(NOW + 3600), "Infinity").encode()),
     "bad_claim"),
    ("string-iat", lambda: make(c=claims(iat="yesterday")), "bad_claim"),
    ("string-nbf", lambda: make(c=claims(nbf="0")), "bad_claim"),
    ("empty-sub", lambda: make(c=claims(sub="")), "bad_claim"),
    ("numeric-jti", lambda: make(c=claims(jti=7)), "bad_claim"),
    ("aud-number", lambda: make(c=claims(aud=1)), "bad_claim"),
    ("wrong-aud", lambda: make(c=claims(aud="someone-else")), "wrong_audience"),
    ("run-aud-on-provision", lambda: make(c=claims(aud=RUN_AUDIENCE)), "wrong_audience"),
    ("aud-list-without-ours", lambda: make(c=claims(aud=["a", "bootstrap-saas:run"])), "wrong_audience"),
    ("aud-superstring", lambda: make(c=claims(aud=PROVISION_AUDIENCE + "-evil")), "wrong_audience"),
    ("aud-substring", lambda: make(c=claims(aud="bootstrap-saas")), "wrong_audience"),
    ("aud-case", lambda: make(c=claims(aud=PROVISION_AUDIENCE.upper())), "wrong_audience"),
    ("aud-empty-list", lambda: make(c=claims(aud=[])), "wrong_audience"),
    ("wrong-iss", lambda: make(c=claims(iss="evil")), "wrong_issuer"),
    ("iss-superstring", lambda: make(c=claims(iss=ISSUER + "-evil")), "wrong_issuer"),
    ("iss-trailing-space", lambda: make(c=claims(iss=ISSUER + " ")), "wrong_issuer"),
]


@pytest.mark.parametrize("name,build,reason", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_token_is_refused_with_reason(name, build, reason):
    token = build()
    cache, source = fresh_cache()
    with pytest.raises(TokenRefused) as e:
        verify_token(token, cache, PROVISION_TYP, ISSUER, PROVISION_AUDIENCE, now=NOW)
    assert e.value.reason == reason, str(e.value)
    message = str(e.value)
    assert message.startswith("token refused (%s): " % reason)
    if token:
        assert token not in message
        for part in token.split("."):
            if len(part) > 20:
                assert part not in message
    if reason in ("too_large", "bad_kid", "bad_algorithm", "wrong_type", "malformed") and not name.startswith("payload-"):
        assert source.calls == 0, "refused before any key lookup"


def test_corpus_is_large_enough():
    assert len(HOSTILE) >= 40


def test_refusal_shows_fingerprint_not_token():
    token = make(c=claims(iat=NOW - 7200, nbf=NOW - 7200, exp=NOW - 3600))
    cache, dummy = fresh_cache()
    with pytest.raises(TokenRefused) as e:
        verify_token(token, cache, PROVISION_TYP, ISSUER, PROVISION_AUDIENCE, now=NOW)
    fingerprint = hashlib.sha256(token.encode()).hexdigest()
    assert e.value.fingerprint == fingerprint
    assert str(e.value) == ("token refused (expired): the token expired at 2027-01-15T07:00:00Z "
                            "(fingerprint sha256:%s...)" % fingerprint[:16])


class CountingServer:
    """A real HTTP listener: any request to it means a header URL was followed."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                body = json.dumps({"keys": [public_jwk(OTHER_KEY, "attacker")]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = CountingServer()
    yield server
    server.close()


@pytest.mark.parametrize("field", ["jku", "x5u"])
def test_url_header_fields_are_never_fetched(listener, field):
    # A token signed by the attacker's key, pointing at the attacker's JWKS: refused, and not fetched.
    token = make(h=header(kid="attacker", **{field: listener.url + "/jwks.json"}), key=OTHER_KEY)
    cache, source = fresh_cache()
    with pytest.raises(TokenRefused) as e:
        verify_token(token, cache, PROVISION_TYP, ISSUER, PROVISION_AUDIENCE, now=NOW)
    assert e.value.reason == "unknown_key"
    time.sleep(0.2)
    assert listener.hits == []
    assert source.calls == 1  # only our own JWKS


def test_url_header_fields_on_a_genuine_token_are_ignored(listener):
    token = make(h=header(jku=listener.url, x5u=listener.url, x5c=["MIIB"]))
    cache, dummy = fresh_cache()
    assert verify_token(token, cache, PROVISION_TYP, ISSUER, PROVISION_AUDIENCE, now=NOW)["sub"] == "alice"
    time.sleep(0.2)
    assert listener.hits == []


def test_flood_of_unknown_kids_is_one_refetch():
    source = Source()
    cache = JwksCache(source, min_refetch_interval=60, clock=lambda: 0.0)
    verify_token(make(), cache, PROVISION_TYP, ISSUER, PROVISION_AUDIENCE, now=NOW)
    assert source.calls == 1
    for dummy in range(100):
        with pytest.raises(TokenRefused) as e:
            verify_token(make(h=header(kid="k" + secrets.token_hex(8))), cache, PROVISION_TYP, ISSUER,
                         PROVISION_AUDIENCE, now=NOW)
        assert e.value.reason == "unknown_key"
    assert source.calls == 1


def test_unknown_kid_on_a_cold_cache_refetches_once():
    source = Source()
    cache = JwksCache(source, min_refetch_interval=60, clock=lambda: 0.0)
    for dummy in range(30):
        with pytest.raises(TokenRefused):
            verify_token(make(h=header(kid="k" + secrets.token_hex(8))), cache, PROVISION_TYP, ISSUER,
                         PROVISION_AUDIENCE, now=NOW)
    assert source.calls == 1


@pytest.mark.parametrize("label,c", [
    ("plain", {}),
    ("aud-list-with-ours", {"aud": ["other", PROVISION_AUDIENCE]}),
    ("expired-within-leeway", {"exp": NOW - 10}),
    ("nbf-within-leeway", {"nbf": NOW + 20, "iat": NOW + 20}),
    ("no-nbf", {"nbf": DROP}),
    ("float-times", {"iat": NOW + 0.5, "exp": NOW + 3600.5}),
    ("max-ttl-exactly", {"exp": NOW + 86400}),
])
def test_good_tokens_verify(label, c):
    cache, dummy = fresh_cache()
    out = verify_token(make(c=claims(**c)), cache, PROVISION_TYP, ISSUER, PROVISION_AUDIENCE, now=NOW)
    assert out["sub"] == "alice" and out["profile"] == "dev"


def test_run_token_verifies_as_run_and_not_as_provision():
    run_claims = claims(aud=RUN_AUDIENCE, run="r-1")
    token = make(h=header(typ=RUN_TYP), c=run_claims)
    cache, dummy = fresh_cache()
    assert verify_token(token, cache, RUN_TYP, ISSUER, RUN_AUDIENCE, now=NOW)["run"] == "r-1"
    with pytest.raises(TokenRefused) as e:
        verify_token(token, cache, PROVISION_TYP, ISSUER, PROVISION_AUDIENCE, now=NOW)
    assert e.value.reason == "wrong_type"
    provision = make()
    with pytest.raises(TokenRefused) as e:
        verify_token(provision, cache, RUN_TYP, ISSUER, RUN_AUDIENCE, now=NOW)
    assert e.value.reason == "wrong_type"
    no_run = make(h=header(typ=RUN_TYP), c=claims(aud=RUN_AUDIENCE))
    with pytest.raises(TokenRefused) as e:
        verify_token(no_run, cache, RUN_TYP, ISSUER, RUN_AUDIENCE, now=NOW)
    assert e.value.reason == "missing_claim"


def test_tagged_string_subclass_is_accepted():
    class Tagged(str):
        pass

    cache, dummy = fresh_cache()
    assert verify_token(Tagged(make()), cache, PROVISION_TYP, Tagged(ISSUER), Tagged(PROVISION_AUDIENCE), now=NOW)


def test_jwcrypto_token_verifies():
    private = jwc_jwk.JWK.from_pem(KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    token = jwc_jwt.JWT(header={"alg": "RS256", "typ": PROVISION_TYP, "kid": "k1"}, claims=claims())
    token.make_signed_token(private)
    cache, dummy = fresh_cache()
    assert verify_token(token.serialize(), cache, PROVISION_TYP, ISSUER, PROVISION_AUDIENCE, now=NOW)["sub"] == "alice"


def test_pyjwt_token_verifies():
    token = pyjwt.encode(claims(), KEY, algorithm="RS256", headers={"typ": PROVISION_TYP, "kid": "k1"})
    cache, dummy = fresh_cache()
    assert verify_token(token, cache, PROVISION_TYP, ISSUER, PROVISION_AUDIENCE, now=NOW)["sub"] == "alice"


def test_jwcrypto_verifies_our_test_signer():
    # The corpus's own signer makes standard tokens: the "good" baseline is not a private dialect.
    token = make()
    public = jwc_jwk.JWK(**JWKS["keys"][0])
    checked = jwc_jwt.JWT(jwt=token, key=public, algs=["RS256"], check_claims=False)
    assert json.loads(checked.claims)["sub"] == "alice"
