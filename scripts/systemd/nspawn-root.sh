#!/usr/bin/env bash
# Build, once, the Debian 12 root that nspawn-check.sh boots: minbase with
# systemd, the firewall tools, nginx and HAProxy (run as services in the
# container), iproute2 and curl (addresses and requests inside the
# container's own network namespace). A root whose stamp lists the same
# packages is reused; the check boots a copy, so the root stays as built.
#
#   bash scripts/systemd/nspawn-root.sh [ROOT]    # default /var/lib/machines/pdsl
#
# Needs root, debootstrap and Debian's mirror (debootstrap's default, or
# $DEBIAN_MIRROR); about 3 minutes and 330 MB the first time.
set -euo pipefail
root=${1:-/var/lib/machines/pdsl}
suite=bookworm
# procps: /bin/kill, which haproxy.service's reload runs (minbase has none).
packages=systemd,systemd-sysv,dbus,procps,nftables,iptables,ipset,ca-certificates,nginx-light,haproxy,iproute2,curl
want="$suite $packages"
have=$(cat "$root/etc/pdsl-root" 2>/dev/null || true)
if [ "$have" = "$want" ]; then
	exit 0
fi
# A root built for another package list gets the missing packages with
# apt-get inside it (host network, no boot), which is quicker than a new
# debootstrap.
if [ "${have%% *}" = "$suite" ]; then
	if systemd-nspawn -q -D "$root" --register=no --keep-unit --resolv-conf=copy-host /bin/sh -c \
		"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${packages//,/ }" >"$root.apt.log" 2>&1; then
		echo "$want" >"$root/etc/pdsl-root"
		rm -f "$root.apt.log"
		exit 0
	fi
	tail -20 "$root.apt.log" >&2
	echo "nspawn-root.sh: apt-get in $root failed; building it anew" >&2
fi
# Build beside the root and rename, so an interrupted build is never reused.
rm -rf "$root.new"
mkdir -p "$(dirname "$root")"
debootstrap --variant=minbase --include="$packages" "$suite" "$root.new" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$root.new.log" 2>&1 || {
	tail -20 "$root.new.log" >&2
	echo "nspawn-root.sh: debootstrap $suite into $root.new failed (log: $root.new.log)" >&2
	exit 1
}
echo "$want" >"$root.new/etc/pdsl-root"
rm -rf "$root" "$root.new.log"
mv "$root.new" "$root"
