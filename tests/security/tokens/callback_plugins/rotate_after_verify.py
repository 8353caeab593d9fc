# Test-only callback: rotates the control plane's signing key from a second process right after the
# role's token_verify task, so that the rest of the run happens under the new key.
from __future__ import annotations

import json
import os
import subprocess

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: rotate_after_verify
type: aggregate
short_description: run `bs-controlplane keys rotate` after the token_verify task (tests only)
description: Reads BS_TEST_ROTATE_DATA (the data dir), BS_TEST_ROTATE_CLI and BS_TEST_ROTATE_LOG from the environment.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "rotate_after_verify"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result):
        if result._task.name != "Verify the provisioning token":
            return
        done = subprocess.run([os.environ["BS_TEST_ROTATE_CLI"], "keys", "rotate", "--data",
                               os.environ["BS_TEST_ROTATE_DATA"]], capture_output=True, text=True, timeout=60,
                              check=False)
        with open(os.environ["BS_TEST_ROTATE_LOG"], "a") as log:
            log.write(json.dumps({"after": result._task.name, "rc": done.returncode,
                                  "verified_kid": result._result.get("kid"), "out": done.stdout}) + "\n")
