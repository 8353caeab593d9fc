"""JwksCache: key selection, rate-limited refetch, and fail-closed behaviour when the JWKS cannot be had."""
import base64
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._jwks import (
    JwksCache,
    JwksError,
    parse_jwks,
)


def b64u_uint(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rsa_jwk(key, kid, **extra):
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64u_uint(numbers.n), "e": b64u_uint(numbers.e)}
    jwk.update(extra)
    return {k: v for k, v in jwk.items() if v is not None}


@pytest.fixture(scope="module")
def keys():
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for dummy in range(2)]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Source:
    """A JWKS endpoint stand-in: serves a document, or fails, and counts calls."""

    def __init__(self, document):
        self.document = document
        self.calls = 0
        self.error = None

    def __call__(self):
        self.calls += 1
        if self.error:
            raise self.error
        return self.document


def test_key_for_uses_the_cache(keys):
    source = Source({"keys": [rsa_jwk(keys[0], "k1")]})
    cache = JwksCache(source, clock=Clock())
    first = cache.key_for("k1")
    assert first.public_numbers() == keys[0].public_key().public_numbers()
    for dummy in range(20):
        cache.key_for("k1")
    assert source.calls == 1


def test_unknown_kid_flood_is_one_refetch_per_interval(keys):
    clock = Clock()
    source = Source({"keys": [rsa_jwk(keys[0], "k1")]})
    cache = JwksCache(source, min_refetch_interval=60, clock=clock)
    cache.key_for("k1")
    for dummy in range(200):
        with pytest.raises(JwksError) as e:
            cache.key_for(secrets.token_hex(8))
        assert e.value.reason == "unknown_key"
    assert source.calls == 1  # the first fetch was < 60 s ago: no refetch at all
    clock.now += 60
    for dummy in range(200):
        with pytest.raises(JwksError):
            cache.key_for(secrets.token_hex(8))
    assert source.calls == 2


def test_rotated_key_is_found_by_one_refetch(keys):
    clock = Clock()
    source = Source({"keys": [rsa_jwk(keys[0], "k1")]})
    cache = JwksCache(source, min_refetch_interval=60, clock=clock)
    cache.key_for("k1")
    source.document = {"keys": [rsa_jwk(keys[0], "k1"), rsa_jwk(keys[1], "k2")]}
    clock.now += 61
    assert cache.key_for("k2").public_numbers() == keys[1].public_key().public_numbers()
    assert cache.key_for("k1")
    assert source.calls == 2


def test_fetch_failure_fails_closed_and_is_rate_limited(keys):
    clock = Clock()
    source = Source({"keys": [rsa_jwk(keys[0], "k1")]})
    source.error = OSError("connection refused")
    cache = JwksCache(source, min_refetch_interval=60, clock=clock)
    for dummy in range(10):
        with pytest.raises(JwksError) as e:
            cache.key_for("k1")
        assert e.value.reason == "unavailable"
        assert "could not be fetched" in str(e.value) and "connection refused" in str(e.value)
        assert "fail closed" in str(e.value)
    assert source.calls == 1  # a failing endpoint is not hammered either
    source.error = None
    clock.now += 60
    assert cache.key_for("k1")
    assert source.calls == 2


def test_known_kid_survives_a_failed_refetch_but_unknown_kid_reports_the_failure(keys):
    clock = Clock()
    source = Source({"keys": [rsa_jwk(keys[0], "k1")]})
    cache = JwksCache(source, min_refetch_interval=60, clock=clock)
    cache.key_for("k1")
    source.error = OSError("boom")
    clock.now += 61
    with pytest.raises(JwksError) as e:
        cache.key_for("k-new")
    assert e.value.reason == "unavailable"
    assert cache.key_for("k1")  # still within max_age: the keys fetched before stay usable


def test_stale_cache_with_failing_endpoint_fails_closed(keys):
    clock = Clock()
    source = Source({"keys": [rsa_jwk(keys[0], "k1")]})
    cache = JwksCache(source, min_refetch_interval=60, clock=clock, max_age=300)
    cache.key_for("k1")
    source.error = OSError("down")
    clock.now += 301
    with pytest.raises(JwksError) as e:
        cache.key_for("k1")
    assert e.value.reason == "unavailable"


@pytest.mark.parametrize("document", [None, [], {}, {"keys": "nope"}, "text"])
def test_malformed_jwks_is_unavailable(document):
    cache = JwksCache(Source(document), clock=Clock())
    with pytest.raises(JwksError) as e:
        cache.key_for("k1")
    assert e.value.reason == "unavailable"


def test_only_usable_rsa_signing_keys_are_kept(keys):
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_numbers = ec_key.public_key().public_numbers()
    document = {"keys": [
        rsa_jwk(keys[0], "good"),
        rsa_jwk(keys[0], "no-alg-no-use", alg=None, use=None),
        rsa_jwk(keys[0], "rs512", alg="RS512"),
        rsa_jwk(keys[0], "ps256", alg="PS256"),
        rsa_jwk(keys[0], "enc-use", use="enc"),
        rsa_jwk(small, "too-small"),
        rsa_jwk(keys[0], "bad kid/../"),
        rsa_jwk(keys[0], "dup"),
        rsa_jwk(keys[1], "dup"),
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64u_uint(ec_numbers.x), "y": b64u_uint(ec_numbers.y)},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        "not-an-object",
    ]}
    assert sorted(parse_jwks(document)) == ["good", "no-alg-no-use"]
