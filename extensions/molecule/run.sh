#!/bin/sh
# `make molecule`: install podman and build the host image when they are missing, then run every
# scenario under extensions/molecule with `molecule test` (create, prepare, converge, idempotence,
# side effect, verify, destroy). Needs root, as podman's rootful mode and apt-get do.
set -eu
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="$PWD/extensions/molecule/containers.conf"

missing=""
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "make molecule needs$missing; install them (apt-get install podman runc debootstrap) or run as root" >&2
        exit 1
    fi
    echo "installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi

sh extensions/molecule/build-host-image.sh
start=$(date +%s)
molecule test --all
echo "make molecule: every scenario passed in $(( $(date +%s) - start )) s"
