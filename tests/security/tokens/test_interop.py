"""Interoperability with an independent JOSE implementation (jwcrypto), in both directions.

jwcrypto signs with the control plane's key and the collection and the control plane accept the
result; the control plane's tokens verify with jwcrypto against the JWKS it publishes.
"""
import json
import time
import uuid

import pytest
from jwcrypto import jwk, jws, jwt

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._jwks import JwksCache
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._tokens import (
    RUN_AUDIENCE,
    RUN_TYP,
    verify_token,
)
from bootstrap_controlplane import store
from helpers.controlplane import ControlPlane

from . import _kit
from ._kit import ISSUER, PROVISION_AUD, PROVISION_TYP, RUN_AUD


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("interop") / "cp")
    plane.init()
    plane.set_profile("dev", {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "x\n"}]})
    with plane:
        plane.start("--rate-limit", "0")
        yield plane


def published_keys(cp):
    return jwk.JWKSet.from_json(json.dumps(_kit.api(cp, "GET", "/.well-known/jwks.json").body))


def collection_cache(cp):
    client = ControlPlaneClient(cp.url, ca_pem=cp.ca_path.read_text(), timeout=30)
    return JwksCache(lambda: client.get("/.well-known/jwks.json"))


def register(cp, token, kid, claims):
    """What minting stores: the fingerprint and the claims, never the token (a token jwcrypto signed)."""
    conn = store.connect(cp.data_dir)
    try:
        with store.Transaction(conn):
            store.insert_token(conn, {"fingerprint": _kit.fingerprint(token), "jti": claims["jti"], "kid": kid,
                                      "profile": claims["profile"], "profile_version": 1, "user": claims["sub"],
                                      "iat": claims["iat"], "exp": claims["exp"], "minted_by": "jwcrypto"})
    finally:
        conn.close()


def test_jwcrypto_token_with_the_control_planes_key_is_accepted_by_both_sides(cp):
    kid, dummy = _kit.signing_key(cp)
    private = jwk.JWK.from_pem((cp.data_dir / "keys" / ("%s.pem" % kid)).read_bytes())
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": PROVISION_AUD, "sub": "alice", "jti": uuid.uuid4().hex, "iat": now,
              "nbf": now, "exp": now + 600, "profile": "dev"}
    signed = jwt.JWT(header={"alg": "RS256", "typ": PROVISION_TYP, "kid": kid}, claims=claims)
    signed.make_signed_token(private)
    token = signed.serialize()

    assert verify_token(token, collection_cache(cp), PROVISION_TYP, ISSUER, PROVISION_AUD) == claims
    register(cp, token, kid, claims)
    valid = _kit.validate(cp, token)
    assert (valid.status, valid.body["status"], valid.body["user"]) == (200, "unused", "alice"), valid
    redeemed = _kit.redeem(cp, token, _kit.secret_hash())
    assert redeemed.status == 200 and redeemed.body["profile"]["name"] == "dev", redeemed

    # ...and the run token that the control plane answers with verifies with jwcrypto in turn.
    run = jwt.JWT(jwt=redeemed.body["run_token"], key=published_keys(cp), algs=["RS256"],
                  check_claims={"iss": ISSUER, "aud": RUN_AUD, "exp": None, "run": redeemed.body["run_id"]})
    assert json.loads(run.header)["typ"] == RUN_TYP
    assert verify_token(redeemed.body["run_token"], collection_cache(cp), RUN_TYP, ISSUER, RUN_AUDIENCE)["run"] \
        == redeemed.body["run_id"]


def test_control_plane_tokens_verify_with_jwcrypto_against_the_published_jwks(cp):
    token = _kit.mint(cp, ttl=900)
    checked = jwt.JWT(jwt=token, key=published_keys(cp), algs=["RS256"],
                      check_claims={"iss": ISSUER, "aud": PROVISION_AUD, "sub": "alice", "exp": None,
                                    "nbf": None, "profile": "dev"})
    header, claims = json.loads(checked.header), json.loads(checked.claims)
    assert header == {"alg": "RS256", "typ": PROVISION_TYP, "kid": _kit.kid_of(token)}
    assert claims["exp"] - claims["iat"] == 900 and len(claims["jti"]) == 32
    # The same check fails for a JWKS that lacks the signing key: the verification is real.
    stranger = jwk.JWKSet()
    stranger.add(jwk.JWK.generate(kty="RSA", size=2048, kid=_kit.kid_of(token), alg="RS256", use="sig"))
    with pytest.raises((jws.InvalidJWSSignature, jwt.JWTMissingKey)):
        jwt.JWT(jwt=token, key=stranger, algs=["RS256"])


def test_jwcrypto_refuses_our_tokens_for_the_other_audience(cp):
    token = _kit.mint(cp)
    with pytest.raises(jwt.JWTInvalidClaimValue):
        jwt.JWT(jwt=token, key=published_keys(cp), algs=["RS256"], check_claims={"aud": RUN_AUD})
