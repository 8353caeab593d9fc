#!/bin/sh
# Copy the collection, as galaxy.yml's build_ignore defines it, to
# $1/ansible_collections/bootstrap_saas/provisioning: ansible-test runs only from such a path.
# The copy gets a git repository of its own because ansible-test lists files through git, and the
# checkout's git would hide the copy (it sits under the ignored .build/).
set -eu
cd "$(dirname "$0")/.."
dest="$1/ansible_collections/bootstrap_saas/provisioning"
rm -rf "$dest"
mkdir -p "$dest"
# Tracked and new (not ignored) files, minus what the artifact leaves out and local virtual environments.
git ls-files -co --exclude-standard -z \
    | grep -zv -E '^(controlplane|bench|demo|\.ci|\.ansible|\.venv[^/]*)/|^Makefile$|^tests/output/' \
    | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$dest" -xf -
git -C "$dest" init -q
git -C "$dest" add -A
echo "$dest"
