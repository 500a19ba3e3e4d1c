#!/usr/bin/env bash
# Manual check: boot a minimal Debian 12 with a real systemd in a
# systemd-nspawn container (its own network namespace, so the host's
# firewall is never touched), install pdsafelist with the shipped unit, and
# start it with each host sink type.
#
#   apt-get install debootstrap systemd-container
#   debootstrap --variant=minbase \
#     --include=systemd,systemd-sysv,dbus,nftables,iptables,ipset,ca-certificates \
#     bookworm /var/lib/machines/pdsl http://deb.debian.org/debian
#   bash scripts/systemd/nspawn-check.sh /var/lib/machines/pdsl
#
# It needs root and takes about a minute once the root exists.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=${1:?usage: nspawn-check.sh ROOTFS}
machine=pdsl-check

CGO_ENABLED=0 go build -o "$root/usr/local/bin/pdsafelist" ./cmd/pdsafelist
install -m 0644 scripts/systemd/pdsafelist.service scripts/systemd/pdsafelist.timer "$root/etc/systemd/system/"
# A minimal host: none of the optional paths exist.
rm -rf "$root/etc/nftables.d" "$root/etc/iptables" "$root/var/lib/prometheus" "$root/var/lib/pdsafelist"
install -d "$root/etc/pdsafelist"
config() {
	cat >"$root/etc/pdsafelist/pdsafelist.yaml" <<CFG
sets: [office]
catalog:
  office:
    direction: ingress
    ports: [443]
    static: [44.242.69.192/32, 2600:1f14:d0c:9d00::a1/128]
sinks:
$1
CFG
}

machinectl terminate "$machine" >/dev/null 2>&1 || true
systemd-nspawn -q -D "$root" -M "$machine" --private-network -b >/tmp/nspawn-console.log 2>&1 &
for _ in $(seq 60); do
	systemd-run -q -M "$machine" --wait -P true >/dev/null 2>&1 && break
	sleep 1
done
inside() { systemd-run -q -M "$machine" --wait -P "$@"; }
trap 'machinectl terminate "$machine" >/dev/null 2>&1 || true' EXIT
echo "systemd in the container: $(inside systemctl --version | head -1)"

run() {
	local name=$1
	inside systemctl daemon-reload
	if inside systemctl start pdsafelist.service; then
		echo "PASS $name: $(inside systemctl show -P Result pdsafelist.service), exit $(inside systemctl show -P ExecMainStatus pdsafelist.service)"
	else
		echo "FAIL $name"
		inside journalctl -u pdsafelist.service --no-pager -n 20 || true
		return 1
	fi
}

# 1. Nothing optional exists: the unit still starts; nftables into the
# state directory (loaded), iptables live on the nf_tables backend.
config "  - {type: nftables, path: /var/lib/pdsafelist/pagerduty.nft, apply: true, enforce: ingress}
  - {type: iptables, enforce: ingress}"
run "minimal host: nftables (apply) + iptables (nf_tables)"
inside nft list table inet pdsafelist | grep -q 44.242.69.192 && echo "  nft table loaded with the static set"

# 2. The legacy backend needs /run/xtables.lock under ProtectSystem=strict.
inside update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
inside update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null
run "iptables live on the legacy backend"
inside iptables-legacy -S PDSAFELIST-IN | grep -q 44.242.69.192 && echo "  legacy chain holds the static set"

# 3. The README's paths, once their directories exist.
install -d "$root/etc/nftables.d" "$root/etc/iptables" "$root/var/lib/prometheus/node-exporter"
config "  - {type: nftables, path: /etc/nftables.d/pagerduty.nft}
  - {type: iptables-file, path: /etc/iptables/pdsafelist.v4}"
run "README paths: /etc/nftables.d and iptables-file /etc/iptables"
ls -l "$root/etc/nftables.d/pagerduty.nft" "$root/etc/iptables/pdsafelist.v4" "$root/etc/iptables/pdsafelist.v6"
ls -l "$root/var/lib/prometheus/node-exporter/pdsafelist.prom"

# 4. The timer is accepted and scheduled.
inside systemctl enable --now pdsafelist.timer
inside systemctl list-timers pdsafelist.timer --no-pager | head -2
