"""Credential envelopes: interop with jwcrypto, key rings, and every tamper, swap and wrong key refused."""
import base64
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwcrypto import jwe as jwc_jwe, jwk as jwc_jwk

from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._envelope import (
    EnvelopeError,
    decrypt_envelope,
    load_key_ring,
)

PLAINTEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nCANARY-PLAINTEXT-5b1f\n{{ lookup('pipe', 'id') }}\n"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_jwk(kid):
    return {"kty": "oct", "kid": kid, "alg": "dir", "use": "enc", "k": b64u(os.urandom(32))}


def raw(jwk):
    return base64.urlsafe_b64decode(jwk["k"] + "==")


KEY = new_jwk("uk-0123456789abcdef")
OTHER = new_jwk("uk-fedcba9876543210")
RING = {KEY["kid"]: raw(KEY)}


def jwcrypto_envelope(plaintext, jwk=None, name="ssh_key", user="alice", version=1):
    jwk = KEY if jwk is None else jwk
    protected = {"alg": "dir", "enc": "A256GCM", "kid": jwk["kid"], "bs_name": name, "bs_user": user, "bs_ver": version}
    token = jwc_jwe.JWE(plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext,
                        protected=json.dumps(protected))
    token.add_recipient(jwc_jwk.JWK(**jwk))
    return token.serialize(compact=True)


def our_envelope(plaintext, key=RING[KEY["kid"]], kid=KEY["kid"], **header):
    """Built from the contract's wording, independent of any JOSE library."""
    h = {"alg": "dir", "enc": "A256GCM", "kid": kid, "bs_name": "ssh_key", "bs_user": "alice", "bs_ver": 1}
    h.update(header)
    protected = b64u(json.dumps(h, separators=(",", ":")).encode())
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext.encode(), protected.encode("ascii"))
    return ".".join([protected, "", b64u(iv), b64u(sealed[:-16]), b64u(sealed[-16:])])


def assert_clean(error, *secrets):
    text = str(error)
    for secret in (PLAINTEXT, KEY["k"], OTHER["k"]) + secrets:
        assert secret not in text


def test_jwcrypto_envelope_decrypts():
    assert decrypt_envelope(jwcrypto_envelope(PLAINTEXT), RING, "ssh_key", "alice") == PLAINTEXT


def test_our_format_decrypts_with_jwcrypto():
    compact = our_envelope(PLAINTEXT)
    token = jwc_jwe.JWE()
    token.deserialize(compact, key=jwc_jwk.JWK(**KEY))
    assert token.payload.decode() == PLAINTEXT
    assert decrypt_envelope(compact, RING, "ssh_key", "alice") == PLAINTEXT


def test_user_check_can_be_skipped():
    assert decrypt_envelope(our_envelope("x"), RING, "ssh_key", None) == "x"


def test_every_single_character_change_is_refused():
    compact = our_envelope(PLAINTEXT)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    refused = 0
    for i, ch in enumerate(compact):
        for replacement in {alphabet[(alphabet.find(ch) + 1) % 64] if ch in alphabet else "A", "."} - {ch}:
            changed = compact[:i] + replacement + compact[i + 1:]
            with pytest.raises(EnvelopeError) as e:
                decrypt_envelope(changed, RING, "ssh_key", "alice")
            assert_clean(e.value)
            refused += 1
    assert refused >= len(compact)


def test_every_bit_of_iv_ciphertext_and_tag_is_authenticated():
    compact = our_envelope("short secret")
    parts = compact.split(".")
    for index in (2, 3, 4):
        data = base64.urlsafe_b64decode(parts[index] + "==")
        for byte in range(len(data)):
            for bit in (0x01, 0x80):
                flipped = bytearray(data)
                flipped[byte] ^= bit
                changed = list(parts)
                changed[index] = b64u(bytes(flipped))
                with pytest.raises(EnvelopeError) as e:
                    decrypt_envelope(".".join(changed), RING, "ssh_key", "alice")
                assert e.value.reason == "decrypt_failed"


def test_appended_and_dropped_bytes_are_refused():
    compact = our_envelope(PLAINTEXT)
    for changed in (compact + "A", compact[:-1], compact + ".", "." + compact, compact.replace("..", ".A.", 1)):
        with pytest.raises(EnvelopeError):
            decrypt_envelope(changed, RING, "ssh_key", "alice")


def test_name_mismatch():
    with pytest.raises(EnvelopeError) as e:
        decrypt_envelope(our_envelope(PLAINTEXT), RING, "api_token", "alice")
    assert e.value.reason == "name_mismatch"
    assert '"ssh_key"' in str(e.value) and '"api_token"' in str(e.value)
    assert_clean(e.value)


def test_user_mismatch():
    with pytest.raises(EnvelopeError) as e:
        decrypt_envelope(our_envelope(PLAINTEXT), RING, "ssh_key", "bob")
    assert e.value.reason == "user_mismatch"
    assert_clean(e.value)


@pytest.mark.parametrize("field,value", [("bs_name", "api_token"), ("bs_user", "bob"), ("bs_ver", 2)])
def test_header_rewritten_to_move_a_ciphertext_fails_to_decrypt(field, value):
    # The attacker rewrites the header so that the name or user checks pass: the AAD no longer matches.
    compact = our_envelope(PLAINTEXT)
    parts = compact.split(".")
    h = json.loads(base64.urlsafe_b64decode(parts[0] + "=="))
    h[field] = value
    parts[0] = b64u(json.dumps(h, separators=(",", ":")).encode())
    with pytest.raises(EnvelopeError) as e:
        decrypt_envelope(".".join(parts), RING, h["bs_name"], h["bs_user"])
    assert e.value.reason == "decrypt_failed"


def test_header_swapped_from_another_envelope_fails_to_decrypt():
    mine = our_envelope(PLAINTEXT).split(".")
    other = our_envelope("the other one", bs_name="api_token").split(".")
    with pytest.raises(EnvelopeError) as e:
        decrypt_envelope(".".join([other[0]] + mine[1:]), RING, "api_token", "alice")
    assert e.value.reason == "decrypt_failed"


def test_wrong_key_with_the_same_kid():
    ring = {KEY["kid"]: raw(OTHER)}
    with pytest.raises(EnvelopeError) as e:
        decrypt_envelope(our_envelope(PLAINTEXT), ring, "ssh_key", "alice")
    assert e.value.reason == "decrypt_failed"
    assert "wrong key or tampered data" in str(e.value)
    assert_clean(e.value)


def test_unknown_kid():
    with pytest.raises(EnvelopeError) as e:
        decrypt_envelope(our_envelope(PLAINTEXT), {OTHER["kid"]: raw(OTHER)}, "ssh_key", "alice")
    assert e.value.reason == "unknown_kid"
    assert KEY["kid"] in str(e.value)
    assert_clean(e.value)


def test_key_ring_picks_the_key_by_kid():
    text = json.dumps({"keys": [OTHER, KEY]})
    ring = load_key_ring(text)
    assert ring == {OTHER["kid"]: raw(OTHER), KEY["kid"]: raw(KEY)}
    assert decrypt_envelope(jwcrypto_envelope(PLAINTEXT), ring, "ssh_key", "alice") == PLAINTEXT
    assert load_key_ring(json.dumps(KEY)) == RING


@pytest.mark.parametrize("label,text", [
    ("not-json", "not json " + KEY["k"]),
    ("json-list", json.dumps([KEY])),
    ("keys-not-list", json.dumps({"keys": KEY})),
    ("empty-ring", json.dumps({"keys": []})),
    ("kty-rsa", json.dumps(dict(KEY, kty="RSA"))),
    ("alg-a128kw", json.dumps(dict(KEY, alg="A128KW"))),
    ("use-sig", json.dumps(dict(KEY, use="sig"))),
    ("short-key", json.dumps(dict(KEY, k=b64u(os.urandom(16))))),
    ("padded-k", json.dumps(dict(KEY, k=KEY["k"] + "="))),
    ("no-kid", json.dumps({k: v for k, v in KEY.items() if k != "kid"})),
    ("duplicate-kid", json.dumps({"keys": [KEY, dict(OTHER, kid=KEY["kid"])]})),
], ids=lambda value: "ring" if value.startswith(("not json", "{", "[")) else None)  # random keys: stable ids for xdist
def test_bad_key_rings_are_refused_without_echoing_the_key(label, text):
    with pytest.raises(EnvelopeError) as e:
        load_key_ring(text)
    assert e.value.reason == "bad_key"
    assert_clean(e.value)
    assert e.value.__cause__ is None and (e.value.__suppress_context__ or e.value.__context__ is None)


@pytest.mark.parametrize("label,header,reason", [
    ("alg-a256kw", {"alg": "A256KW"}, "malformed"),
    ("enc-a128gcm", {"enc": "A128GCM"}, "malformed"),
    ("zip", {"zip": "DEF"}, "malformed"),
    ("crit", {"crit": ["bs_name"]}, "malformed"),
    ("string-version", {"bs_ver": "1"}, "malformed"),
    ("no-kid", {"kid": None}, "malformed"),
    ("no-name", {"bs_name": None}, "name_mismatch"),
])
def test_bad_headers(label, header, reason):
    with pytest.raises(EnvelopeError) as e:
        decrypt_envelope(our_envelope(PLAINTEXT, **header), RING, "ssh_key", "alice")
    assert e.value.reason == reason


def test_non_utf8_plaintext_is_refused():
    compact = jwcrypto_envelope(b"\xff\xfe binary")
    with pytest.raises(EnvelopeError) as e:
        decrypt_envelope(compact, RING, "ssh_key", "alice")
    assert e.value.reason == "malformed"


def test_not_an_envelope():
    for text in ("", "abc", "a.b.c", "a.b.c.d.e.f"):
        with pytest.raises(EnvelopeError) as e:
            decrypt_envelope(text, RING, "ssh_key", "alice")
        assert e.value.reason == "malformed"
