#!/usr/bin/env bash
# The ecosystem's own gates, run by `make sanity`: ansible-test sanity, ansible-test units on
# ansible-core 2.16 and 2.19 (virtual environments the Makefile builds) and on the newest release
# inside a Debian 13 container (with the end-to-end test), ansible-lint's production profile, doc
# rendering, the built artifact installed and run, and the changelog. Every step runs even when an
# earlier one fails; a summary with each step's time comes last and the exit status says if any failed.
# Usage: .ci/sanity.sh [STEP...]   (default: every step; names as in the summary)
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
BUILD="$REPO/.build"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/extensions/molecule/containers.conf}"
IMAGE="${SANITY_IMAGE:-localhost/bootstrap-saas/sanity:trixie-1}"
NEWEST_CORE="${SANITY_NEWEST_CORE:-ansible-core>=2.21,<2.22}"
ALL_STEPS=(sanity units-2.16 units-2.19 units-newest lint docs artifact changelog)
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=("${ALL_STEPS[@]}")

# ansible-test bootstraps pip in its virtual environments with a downloaded get-pip script; offline,
# a stand-in that installs the pip bundled with Python is enough (ansible-test then installs each
# test's requirements itself). The name follows the pip version that ansible-test asks for.
pip_standin() {
    local venv="$1" version
    version=$("$venv/bin/python" - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(python_requirements.get_venv_packages)).group(1))
PY
)
    mkdir -p ~/.ansible/test/cache
    printf '%s\n' '# Offline stand-in for get-pip: installs the pip that ships with Python.' \
        'import ensurepip' 'ensurepip.bootstrap()' >~/.ansible/test/cache/"get_pip_${version//./_}.py"
}

stage() {  # a fresh copy at .../ansible_collections/bootstrap_saas/provisioning, printed
    .ci/stage-collection.sh "$BUILD/sanity-$1" >/dev/null && echo "$BUILD/sanity-$1/ansible_collections/bootstrap_saas/provisioning"
}

in_venv() {  # run a command with the venv's tools first on PATH
    local venv="$1"
    shift
    PATH="$venv/bin:$PATH" "$@"
}

step_sanity() {
    local venv="$BUILD/venv-core2.19" dir
    pip_standin "$venv"
    dir=$(stage sanity) && (cd "$dir" && in_venv "$venv" ansible-test sanity --python 3.11 --color no)
}

# ansible-test units counts "no tests collected" as success: the JUnit reports must show tests run.
junit_ran() {
    python3 - "$1"/tests/output/junit <<'PY'
import sys, pathlib, xml.etree.ElementTree as ET
total = bad = 0
for report in pathlib.Path(sys.argv[1]).glob("*.xml"):
    for suite in ET.parse(report).getroot().iter("testsuite"):
        total += int(suite.get("tests", 0))
        bad += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
print("unit tests run: %d, failed or errors: %d" % (total, bad))
sys.exit(0 if total and not bad else 1)
PY
}

units_on() {
    local core="$1" venv="$BUILD/venv-core$1" dir
    pip_standin "$venv"
    dir=$(stage "units-$core") || return 1
    (cd "$dir" && in_venv "$venv" ansible-test units --python 3.11 --requirements --color no) && junit_ran "$dir"
}
step_units-2.16() { units_on 2.16; }
step_units-2.19() { units_on 2.19; }

# The newest ansible-core needs Python 3.12+: run its units and the end-to-end test in Debian 13, as
# root (the tests create throwaway accounts), with the control plane and ansible-playbook inside.
step_units-newest() {
    .ci/build-sanity-image.sh || return 1
    local dir ca=/etc/ssl/certs/ca-certificates.crt
    dir=$(stage newest) || return 1
    mkdir -p "$BUILD/cache-newest"
    podman run --rm --network host \
        -v "$ca:$ca:ro" -e PIP_CERT="$ca" -e REQUESTS_CA_BUNDLE="$ca" \
        -v "$REPO:/src:ro" -v "$dir:/collections/ansible_collections/bootstrap_saas/provisioning" \
        -v "$BUILD/cache-newest:/root/.cache" -e NEWEST_CORE="$NEWEST_CORE" \
        "$IMAGE" /bin/bash -euo pipefail -c '
            # A writable copy of the checkout for the control plane build and the end-to-end test.
            mkdir /repo
            tar -C /src --exclude="./.venv*" --exclude=./.build --exclude=./.git --exclude="*.egg-info" -cf - . | tar -C /repo -xf -
            python3 -m venv /opt/venv
            /opt/venv/bin/pip install --quiet "$NEWEST_CORE" -r /repo/requirements.txt \
                -r /repo/tests/unit/requirements.txt pytest /repo/controlplane
            /opt/venv/bin/ansible --version | head -n 1
            mkdir -p /root/.ansible/test/cache
            v=$(/opt/venv/bin/python -c "import inspect,re; from ansible_test._internal import python_requirements as p; print(re.search(r\"pip=.([0-9.]+).\", inspect.getsource(p.get_venv_packages)).group(1))")
            printf "import ensurepip\nensurepip.bootstrap()\n" >/root/.ansible/test/cache/get_pip_${v//./_}.py
            cd /collections/ansible_collections/bootstrap_saas/provisioning
            py=$(/opt/venv/bin/python -c "import sys; print(\"%d.%d\" % sys.version_info[:2])")
            rc=0
            PATH=/opt/venv/bin:$PATH ansible-test units --python "$py" --requirements --color no || rc=1
            test -n "$(find tests/output/junit -name "*.xml" -size +0)" || rc=1
            cd /repo && PATH=/opt/venv/bin:$PATH python -m pytest -q -p no:cacheprovider tests/e2e || rc=1
            exit $rc
        '
}

step_lint() {
    in_venv "$BUILD/venv-lint" ansible-lint --profile production roles/ playbooks/ extensions/molecule/
}

# Every module, action, lookup and the role render with ansible-doc, and the generated reference
# pages under docs/plugins/ match the plugins' DOCUMENTATION.
step_docs() {
    local venv="$BUILD/venv-core2.19" dir failed=0 name
    dir=$(stage docs) || return 1
    export ANSIBLE_COLLECTIONS_PATH="${dir%/ansible_collections/*}"
    for name in $(in_venv "$venv" ansible-doc -t module --list --json bootstrap_saas.provisioning | "$venv/bin/python" -c 'import json,sys; print(" ".join(json.load(sys.stdin)))'); do
        in_venv "$venv" ansible-doc -t module "$name" >/dev/null || { echo "ansible-doc cannot render module $name"; failed=1; }
    done
    for name in $(in_venv "$venv" ansible-doc -t lookup --list --json bootstrap_saas.provisioning | "$venv/bin/python" -c 'import json,sys; print(" ".join(json.load(sys.stdin)))'); do
        in_venv "$venv" ansible-doc -t lookup "$name" >/dev/null || { echo "ansible-doc cannot render lookup $name"; failed=1; }
    done
    in_venv "$venv" ansible-doc -t role bootstrap_saas.provisioning.bootstrap_agent >/dev/null || { echo "ansible-doc cannot render the role"; failed=1; }
    in_venv "$venv" python .ci/plugin-docs.py --check docs/plugins || failed=1
    return $failed
}

step_artifact() {
    in_venv "$BUILD/venv-core2.19" python -m pytest -q -p no:cacheprovider tests/artifact
}

step_changelog() {
    in_venv "$BUILD/venv-lint" antsibull-changelog lint
}

declare -A RESULT SECONDS_TAKEN
failed=0
for step in "${STEPS[@]}"; do
    echo "=== $step"
    start=$(date +%s)
    if "step_$step"; then RESULT[$step]=passed; else RESULT[$step]=FAILED; failed=1; fi
    SECONDS_TAKEN[$step]=$(( $(date +%s) - start ))
    echo "=== $step: ${RESULT[$step]} (${SECONDS_TAKEN[$step]} s)"
done
echo
echo "make sanity summary"
total=0
for step in "${STEPS[@]}"; do
    printf '  %-14s %-7s %5d s\n' "$step" "${RESULT[$step]}" "${SECONDS_TAKEN[$step]}"
    total=$(( total + SECONDS_TAKEN[$step] ))
done
printf '  %-14s %-7s %5d s\n' total "$([ $failed = 0 ] && echo passed || echo FAILED)" "$total"
exit $failed
