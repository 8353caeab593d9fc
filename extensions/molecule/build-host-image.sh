#!/bin/sh
# Build the "fresh Debian host" image the molecule scenarios start, once: reused while it exists.
# No image registry is needed: debootstrap fetches bookworm from the Debian mirror apt is configured
# with, and `podman import` turns the tree into an image.
#
# The image is what a new cloud host looks like: Python 3, sshd, sudo, an admin account `ops`
# (passwordless sudo, key-only SSH; its authorized key is mounted when a container starts, as
# cloud-init would provide it) and an ordinary account `dev` whose home is empty. Host keys and
# the machine id are made when a container starts, so every host has its own.
set -eu

IMAGE="${MOLECULE_HOST_IMAGE:-localhost/bootstrap-saas/molecule-host:bookworm-1}"
SUITE=bookworm
HERE="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"

if podman image exists "$IMAGE"; then
    echo "host image $IMAGE is present"
    exit 0
fi

mirror="${DEBIAN_MIRROR:-$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' "Codename: $SUITE" | head -n 1)}"
if [ -z "$mirror" ]; then
    echo "no Debian $SUITE mirror found in apt's sources (run apt-get update, or set DEBIAN_MIRROR)" >&2
    exit 1
fi

# debootstrap mounts /proc in the tree and may fail to unmount it when something holds it busy;
# never archive or delete through a mount.
unmount_below() {
    awk -v r="$1/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
}
root="$(mktemp -d /var/tmp/bs-molecule-host.XXXXXX)"
trap 'unmount_below "$root"; rm -rf --one-file-system "$root" "$root.log"' EXIT
echo "building $IMAGE with debootstrap from $mirror"
if ! debootstrap --variant=minbase --include=python3,openssh-server,sudo "$SUITE" "$root" "$mirror" >"$root.log" 2>&1; then
    tail -n 30 "$root.log" >&2
    exit 1
fi
unmount_below "$root"

# Host keys come from each container's own start, never from the image.
rm -f "$root"/etc/ssh/ssh_host_* "$root/etc/machine-id"
cat >"$root/etc/ssh/sshd_config.d/molecule-host.conf" <<'CONF'
# Key-only logins for the admin account; the keys come from a read-only mount at start.
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
HostKey /etc/ssh/ssh_host_ed25519_key
ListenAddress 127.0.0.1
# PAM's session modules (loginuid) cannot work inside an unprivileged container.
UsePAM no
CONF

chroot "$root" useradd --no-create-home --home-dir /home/ops --shell /bin/bash ops
# "*" = no password, yet not locked: sshd without PAM refuses key logins to locked ("!") accounts.
chroot "$root" usermod --password '*' ops
printf 'ops ALL=(ALL:ALL) NOPASSWD: ALL\n' >"$root/etc/sudoers.d/ops"
chmod 0440 "$root/etc/sudoers.d/ops"
# The new host's ordinary user, with an empty home (no skeleton files).
chroot "$root" useradd --no-create-home --home-dir /home/dev --shell /bin/bash dev
for account in ops dev; do
    chroot "$root" install -d -m 0755 -o "$account" -g "$account" "/home/$account"
done

chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin

tar -C "$root" --numeric-owner --one-file-system -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "built $IMAGE"
