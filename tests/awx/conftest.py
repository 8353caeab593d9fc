"""One real control plane per test module, loaded with the sample profile (helpers.stack)."""
import secrets

import pytest

from helpers.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("awx-stack-%s" % secrets.token_hex(2)))
    try:
        yield s
    finally:
        s.cp.stop()
