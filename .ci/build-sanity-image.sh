#!/bin/sh
# Build the Debian 13 (trixie) image in which `make sanity` runs the newest ansible-core (it needs
# Python 3.12+, newer than this controller's). Built once with debootstrap from the Debian mirror apt
# is configured with, then reused while it exists: no image registry is needed.
set -eu

IMAGE="${SANITY_IMAGE:-localhost/bootstrap-saas/sanity:trixie-1}"
SUITE=trixie
HERE="$(cd "$(dirname "$0")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/extensions/molecule/containers.conf}"

missing=""
for tool in podman:podman runc:runc debootstrap:debootstrap; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing="$missing ${tool#*:}"
done
if [ -n "$missing" ]; then
    echo "installing$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

if podman image exists "$IMAGE"; then
    echo "image $IMAGE is present"
    exit 0
fi

mirror="${DEBIAN_MIRROR:-$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' | grep -v security | head -n 1)}"
if [ -z "$mirror" ]; then
    echo "no Debian mirror found in apt's sources (run apt-get update, or set DEBIAN_MIRROR)" >&2
    exit 1
fi

root="$(mktemp -d /var/tmp/bs-sanity-image.XXXXXX)"
trap 'rm -rf "$root" "$root.log"' EXIT
echo "building $IMAGE with debootstrap ($SUITE) from $mirror"
# passwd: useradd/userdel for the end-to-end test's throwaway account; git: ansible-test's file list.
debootstrap --variant=minbase --include=python3,python3-venv,passwd,git "$SUITE" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2
    exit 1
}
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
tar -C "$root" --numeric-owner -c . | podman import --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "built $IMAGE"
