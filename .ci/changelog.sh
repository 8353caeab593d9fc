#!/bin/sh
# Generate CHANGELOG.md for the version in galaxy.yml from changelogs/fragments. Until that first
# release is tagged, the release is rebuilt from scratch on every run, so fragments that arrive later
# are included; fragments are kept (keep_fragments) so that a rerun sees them all.
set -eu
cd "$(dirname "$0")/.."
BIN="${CHANGELOG_BIN:-.build/venv-lint/bin}"
# antsibull-changelog lists the plugins with ansible-doc, which finds the collection through this link.
export PATH="$PWD/$BIN:$PATH" ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
mkdir -p .build/collections/ansible_collections/bootstrap_saas
[ -L .build/collections/ansible_collections/bootstrap_saas/provisioning ] ||
    ln -s "$PWD" .build/collections/ansible_collections/bootstrap_saas/provisioning
version=$("$BIN/python" -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
if [ -f changelogs/changelog.yaml ]; then
    released=$("$BIN/python" -c 'import yaml; print(" ".join(sorted((yaml.safe_load(open("changelogs/changelog.yaml")) or {}).get("releases", {}))))')
    if [ "$released" = "$version" ]; then
        rm changelogs/changelog.yaml
    fi
fi
"$BIN/antsibull-changelog" lint
"$BIN/antsibull-changelog" release --version "$version" --date "${CHANGELOG_DATE:-$(date -u +%F)}"
"$BIN/antsibull-changelog" lint
echo "CHANGELOG.md generated for $version"
