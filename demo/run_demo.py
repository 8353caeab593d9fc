"""`make demo`: the main job on an embedded default, from nothing to a provisioned host and back.

Starts a fresh reference control plane on a free loopback port, loads the sample profile and an
encrypted SSH key, creates a throwaway local account as the "new host", mints one token and runs
ansible-playbook with the bootstrap_agent role; then shows what was written, the audit trail and
its verification, and removes everything it made.
"""
import os
import stat
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The demo drives exactly the parts the end-to-end tests drive.
sys.path.insert(0, str(REPO / "tests"))
import conftest  # noqa: E402,F401  (links the checkout as the collection)
from helpers.stack import CP_USER, Stack, sample_manifest  # noqa: E402
from helpers.e2e import ThrowawayUser, run_playbook  # noqa: E402


def say(text):
    print("\n== %s" % text, flush=True)


def main():
    if os.geteuid() != 0:
        print("make demo creates a throwaway local account to stand for the new host, which needs root.\n"
              "Run it as root (for example `sudo make demo`), or in a container or VM where you are root.",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bs-demo-") as work:
        say("starting the reference control plane")
        stack = Stack(work)
        try:
            print("control plane %s, data in %s" % (stack.cp.url, stack.cp.data_dir))
            print("profile 'dev' for user %s: %d files, one from an encrypted credential"
                  % (CP_USER, len(sample_manifest()["files"])))
            with ThrowawayUser(prefix="bsdemo") as user:
                print("new host account: %s (home %s)" % (user.name, user.home))
                token = stack.mint()
                say("running ansible-playbook with bootstrap_saas.provisioning.bootstrap_agent")
                result = run_playbook(work, stack.role_vars(token, user.name), capture=False)
                if result.returncode != 0:
                    print("ansible-playbook failed (exit %d)" % result.returncode)
                    return 1
                say("what was written")
                show_files(user)
                say("audit trail")
                print(stack.cp.cli("audit", "list", "--data", str(stack.cp.data_dir)).stdout)
                say("audit verify")
                verify = stack.cp.audit_verify()
                print((verify.stdout + verify.stderr).strip())
                if verify.returncode != 0:
                    return 1
        finally:
            stack.cp.stop()
    say("done: control plane stopped, throwaway account and data removed")
    return 0


def show_files(user):
    print("%-28s %-5s %s" % ("path", "mode", "owner"))
    for entry in sample_manifest()["files"]:
        st = (user.home / entry["path"][2:]).lstat()
        print("%-28s %04o  %s" % (entry["path"], stat.S_IMODE(st.st_mode), user.name if st.st_uid == user.pw.pw_uid else st.st_uid))


if __name__ == "__main__":
    sys.exit(main())
