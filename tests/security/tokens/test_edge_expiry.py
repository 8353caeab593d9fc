"""An expired token is refused at the edge: before the database is touched.

The server is started and, before it has served a single request that needs the database, its SQLite
file is swapped for bytes that are not a database, so any read fails (500). An expired token must
still get its precise answer, token_expired; a live token on the same server gets the 500, which
shows that the database really is unreadable and that the test would catch a read.
"""
import time

import pytest

from helpers.controlplane import ControlPlane

from . import _kit
from ._kit import LEEWAY, RUN_AUD, RUN_TYP


@pytest.fixture(scope="module")
def broken_db(tmp_path_factory):
    cp = ControlPlane(tmp_path_factory.mktemp("edge") / "cp")
    cp.init()
    cp.set_profile("dev", {"files": []})
    live = cp.mint("dev", "alice")
    with cp:
        cp.start("--rate-limit", "0")
        for suffix in ("-wal", "-shm"):
            cp.db_path.with_name(cp.db_path.name + suffix).unlink(missing_ok=True)
        cp.db_path.rename(cp.db_path.with_name("moved-away.db"))
        cp.db_path.write_bytes(b"this is not a database, any read of it fails\n" * 100)
        kid, key = _kit.signing_key(cp)
        yield cp, kid, key, live


def expired_provisioning(kid, key, seconds_ago):
    now = int(time.time())
    return _kit.forge(key, kid, iat=now - 600, nbf=now - 600, exp=now - seconds_ago)


def test_live_token_needs_the_database_which_is_unreadable(broken_db):
    cp, _kid, _key, live = broken_db
    answer = _kit.validate(cp, live)
    assert (answer.status, answer.code) == (500, "internal_error"), answer
    assert "not a database" in cp.log_text()


@pytest.mark.parametrize("endpoint", ["validate", "redeem"])
def test_expired_provisioning_token_is_refused_without_the_database(broken_db, endpoint):
    cp, kid, key, _live = broken_db
    token = expired_provisioning(kid, key, LEEWAY + 5)
    if endpoint == "validate":
        answer = _kit.validate(cp, token)
    else:
        answer = _kit.redeem(cp, token, _kit.secret_hash())
    assert (answer.status, answer.code) == (401, "token_expired"), answer
    assert "expired at" in answer.message and token not in answer.message


def test_expired_within_leeway_goes_on_to_the_database(broken_db):
    """The leeway is the same at the edge: 5 s past exp is not yet refused there (and so hits the 500)."""
    cp, kid, key, _live = broken_db
    answer = _kit.validate(cp, expired_provisioning(kid, key, 5))
    assert (answer.status, answer.code) == (500, "internal_error"), answer


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/v1/audit/events", {"events": [{"id": "ab" * 16, "type": "task.completed", "run_id": "r1",
                                              "data": {}}]}),
    ("GET", "/v1/credentials/ssh_key", None),
])
def test_expired_run_token_is_refused_without_the_database(broken_db, method, path, body):
    cp, kid, key, _live = broken_db
    now = int(time.time())
    run_token = _kit.forge(key, kid, typ=RUN_TYP, aud=RUN_AUD, run="r1", iat=now - 600, nbf=now - 600,
                           exp=now - LEEWAY - 5)
    answer = _kit.api(cp, method, path, body, bearer=run_token)
    assert (answer.status, answer.code) == (401, "token_expired"), answer
