"""Request-level rate limiting: configurable per client, a 429 with Retry-After, and honest about the wait.

(`serve --rate-limit 0` turning it off is exercised by test_redeem_concurrency.py: a thousand requests
from one address in bursts of fifty, against the default limit of 50 per second.)"""
import json
import time

from helpers.controlplane import ControlPlane

from . import _kit


def test_rate_limit_from_config_answers_429_with_retry_after_and_lets_through_after_it(tmp_path):
    cp = ControlPlane(tmp_path / "cp")
    cp.init()
    config_path = cp.data_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["rate_limit"] = {"rate": 0.5, "burst": 3}  # one request every 2 s after a burst of 3
    config_path.write_text(json.dumps(config))
    cp.set_profile("dev", {"files": []})
    with cp:
        cp.start()
        token = cp.mint("dev", "alice")  # the CLI: not a request, so the whole burst is left
        # A redeem brute force from one address: the burst passes, then everything is refused.
        answers = [_kit.redeem(cp, token, _kit.secret_hash(), "m%d" % i) for i in range(6)]
        assert [a.status for a in answers[:3]] == [200, 409, 409]
        limited = answers[3:]
        assert all((a.status, a.code) == (429, "rate_limited") for a in limited), limited
        wait = int(limited[0].headers["Retry-After"])
        assert 1 <= wait <= 2, wait
        assert "retry in %d s" % wait in limited[0].message
        # No refusal event for requests that never reached the redeem: the limiter answers first.
        refused = [e for e in cp.audit() if e["type"] == "token.redeem_refused"]
        assert len(refused) == 2
        time.sleep(wait + 0.1)
        assert _kit.api(cp, "GET", "/.well-known/jwks.json").status == 200
