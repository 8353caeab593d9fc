#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: token_redeem
short_description: Redeem a single-use provisioning token on the host
version_added: 0.1.0
description:
  - Consumes a provisioning token at the control plane (C(POST /v1/tokens/redeem)) and keeps the
    resulting run on the host, in the agent state folder C(~/.config/bootstrap-saas/) of O(user)
    (mode 0700, files 0600); the run token is kept in C(run.json), the profile in C(profile.json).
  - Before the first redeem the host writes a random machine secret durably; the control plane binds
    the run to its hash, so a redeem whose answer was lost can be repeated by this host (and only by
    this host) and gets the same run back.
  - A token whose run is already recorded as finished on this host is not sent again.
  - Posts one C(task.completed) audit event for the redeem before reporting success.
  - Delivers the host's audit spool (C(~/.config/bootstrap-saas/spool.jsonl)) first, with the recorded
    run's token; when that run has ended, the spool is delivered under the new run's token.
  - The token is never returned, logged or stored; only its SHA-256 fingerprint is.
author:
  - Bootstrap SaaS maintainers (!UNKNOWN)
extends_documentation_fragment:
  - bootstrap_saas.provisioning.connection
  - bootstrap_saas.provisioning.connection.run
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Consumes nothing and contacts nothing; reports whether the token would be redeemed.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  token:
    description:
      - The provisioning token (a JWT). Never logged or returned.
    type: str
    required: true
notes:
  - Verify the token on the controller first with P(bootstrap_saas.provisioning.token_verify#module).
  - The returned RV(credentials) are ciphertext envelopes, decrypted on the controller by the
    P(bootstrap_saas.provisioning.credential#lookup) lookup.
seealso:
  - module: bootstrap_saas.provisioning.home_files
  - module: bootstrap_saas.provisioning.audit_event
"""

EXAMPLES = r"""
- name: Redeem the host's provisioning token
  bootstrap_saas.provisioning.token_redeem:
    url: https://cp.example.com:8443
    ca_pem: "{{ lookup('ansible.builtin.file', 'files/cp-ca.pem') }}"
    token: "{{ provisioning_token }}"
    user: alice
  register: redeemed

- name: Show the run
  ansible.builtin.debug:
    msg: "run {{ redeemed.run_id }}, profile {{ redeemed.profile_name }} v{{ redeemed.profile_version }}"
"""

RETURN = r"""
run_id:
  description: The run the token started (or, for a repeat, the run it had started).
  returned: success, except in check mode when nothing was redeemed yet
  type: str
  sample: 6f1c0d2e9a7b4c1d8e3f5a6b7c8d9e0f
fingerprint:
  description: Lower-case hex SHA-256 of the token; the only form in which the token is shown.
  returned: always
  type: str
  sample: 3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
repeat:
  description: True when this host had already redeemed the token and got the same run back.
  returned: success
  type: bool
finished:
  description: True when the run is recorded as finished on this host (nothing was sent).
  returned: success
  type: bool
profile_name:
  description: Name of the profile the run provisions.
  returned: success, except in check mode when nothing was redeemed yet
  type: str
  sample: dev
profile_version:
  description: Version of the profile.
  returned: success, except in check mode when nothing was redeemed yet
  type: int
  sample: 3
paths:
  description: The profile's paths, as written in the profile (C(~/...)).
  returned: success
  type: list
  elements: str
  sample: ["~/.zshrc", "~/.ssh/id_ed25519"]
credential_names:
  description: Names of the credentials the profile uses.
  returned: success
  type: list
  elements: str
  sample: ["ssh_key"]
credentials:
  description:
    - Credential envelopes by name (compact JWE, ciphertext only), for the credential lookup.
    - Empty when nothing was redeemed by this call.
  returned: success
  type: dict
  sample: {"ssh_key": "eyJhbGciOiJkaXIi..."}
receipt:
  description: The control plane's receipt for the C(task.completed) event.
  returned: when an event was posted
  type: dict
  contains:
    id: {description: Event id, type: str}
    seq: {description: Sequence number in the audit trail, type: int}
    hash: {description: Chain hash of the event, type: str}
    duplicate: {description: True when the event had been recorded before, type: bool}
"""

import hashlib
import socket

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_module import (
    REFUSALS, Failure, run_agent_module)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._agent_state import AgentState
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import (
    AuditClient, AuditUndelivered, deliver_spool_first, make_event)
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import (
    ControlPlaneClient, ControlPlaneError, token_fingerprint)

TASK = "token_redeem"
REFUSAL_STATUSES = (401, 403, 409, 410, 413)


def machine_identity(user):
    try:
        with open("/etc/machine-id") as f:
            base = f.read().strip()
    except (IOError, OSError):
        base = ""
    hostname = socket.gethostname()
    base = base or hostname
    return {"id": hashlib.sha256(("%s:%s" % (base, user)).encode("utf-8")).hexdigest(),
            "hostname": hostname, "user": user}


def profile_summary(profile):
    files = profile.get("files") if isinstance(profile, dict) else None
    files = files if isinstance(files, list) else []
    paths = [f.get("path") for f in files if isinstance(f, dict)]
    names = sorted(set(f["credential"] for f in files if isinstance(f, dict) and f.get("credential")))
    return paths, names


def error_message(error, url):
    if error.code == "unreachable":
        return "control plane unreachable at %s: %s" % (url, error.message)
    if error.status in REFUSAL_STATUSES:
        return "token refused (%s): %s" % (error.code, error.message)
    return "control plane error (%s, HTTP %d): %s" % (error.code, error.status, error.message)


def check_answer(answer):
    problems = []
    for key, kind in (("run_id", str), ("run_token", str), ("profile", dict)):
        if not isinstance(answer.get(key), kind):
            problems.append(key)
    profile = answer.get("profile")
    if isinstance(profile, dict) and not isinstance(profile.get("files"), list):
        problems.append("profile.files")
    if answer.get("credentials") is not None and not isinstance(answer.get("credentials"), dict):
        problems.append("credentials")
    return problems


def summary_result(state, run, fingerprint, **extra):
    paths, names = profile_summary(state.profile())
    result = dict(run_id=run.get("run_id"), fingerprint=fingerprint, repeat=True, finished=bool(run.get("finished")),
                  profile_name=run.get("profile_name"), profile_version=run.get("profile_version"),
                  paths=paths, credential_names=names, credentials={})
    result.update(extra)
    return result


def redeem(module, state, token, fingerprint):
    p = module.params
    url = str(p["url"]).strip().rstrip("/")
    user = p["user"]
    if not module.check_mode:
        # The spool first: it may hold the recorded run's run.finished, which ends that run here too.
        deliver_spool_first(state, p["timeout"])
    run = state.run()
    same_token = bool(run) and run.get("fingerprint") == fingerprint

    if same_token and run.get("finished"):
        return summary_result(state, run, fingerprint, changed=False,
                              msg="the run of token %s already finished on this host" % fingerprint)

    if module.check_mode:
        if same_token:
            return summary_result(state, run, fingerprint, changed=False,
                                  msg="token %s is already redeemed on this host" % fingerprint)
        return dict(changed=True, msg="would redeem token %s for %s at %s" % (fingerprint, user, url),
                    fingerprint=fingerprint, repeat=False, finished=False, paths=[], credential_names=[],
                    credentials={})

    # Durable before the redeem: a lost answer can then be repeated with the same secret.
    secret_hash = state.machine_secret_hash()
    try:
        client = ControlPlaneClient(url, p["ca_pem"], p["timeout"])
        answer = client.post("/v1/tokens/redeem",
                             {"token": token, "machine": machine_identity(user), "machine_secret_hash": secret_hash})
    except ControlPlaneError as e:
        raise Failure(error_message(e, url), code=e.code, status=e.status)
    problems = check_answer(answer)
    if problems:
        raise Failure("the control plane's redeem answer lacks or mistypes: %s" % ", ".join(problems),
                      code="bad_response")

    profile = answer["profile"]
    repeat = bool(answer.get("repeat", False))
    new_run = {
        "url": url,
        "ca_pem": p["ca_pem"],
        "run_id": answer["run_id"],
        "run_token": answer["run_token"],
        "run_token_expires_at": answer.get("run_token_expires_at"),
        "fingerprint": fingerprint,
        "profile_name": profile.get("name"),
        "profile_version": profile.get("version"),
        "finished": False,
    }
    if run and not same_token and not run.get("finished"):
        module.warn("replacing the unfinished run %s (token %s) recorded on this host"
                    % (run.get("run_id"), run.get("fingerprint")))
    state.save_run(new_run)
    state.save_profile(profile)

    # Deterministic data: a repeat posts the same event, which is acknowledged, not stored twice.
    event = make_event(new_run["run_id"], TASK, "task.completed", fingerprint,
                       {"profile": profile.get("name"), "fingerprint": fingerprint})
    try:
        receipts = AuditClient(client, new_run["run_token"], state).deliver([event])
    except AuditUndelivered as e:
        raise Failure("token %s was redeemed (run %s) but %s" % (fingerprint, new_run["run_id"], e),
                      code=e.cause.code, run_id=new_run["run_id"], spooled=e.spooled)

    paths, names = profile_summary(profile)
    credentials = answer.get("credentials") or {}
    return dict(changed=not repeat, run_id=new_run["run_id"], fingerprint=fingerprint, repeat=repeat,
                finished=False, profile_name=new_run["profile_name"], profile_version=new_run["profile_version"],
                paths=paths, credential_names=names,
                credentials=dict((str(k), str(v)) for k, v in credentials.items()), receipt=receipts[0])


def redeem_in_home(module, writer, account):
    token = str(module.params["token"]).strip()
    fingerprint = token_fingerprint(token)
    try:
        return redeem(module, AgentState(writer), token, fingerprint)
    except Failure as e:
        e.result.setdefault("fingerprint", fingerprint)
        raise
    except REFUSALS as e:
        raise Failure(str(e), fingerprint=fingerprint)


# The account options (user, allow_system_user, timeout) come from _agent_module.ACCOUNT_OPTIONS.
OPTIONS = dict(
    url=dict(type="str", required=True),
    ca_pem=dict(type="str"),
    token=dict(type="str", required=True, no_log=True),
)


def main():
    run_agent_module(OPTIONS, redeem_in_home)


if __name__ == "__main__":
    main()
