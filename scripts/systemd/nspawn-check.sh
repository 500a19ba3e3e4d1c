#!/usr/bin/env bash
# Manual check: boot a minimal Debian 12 with a real systemd in a
# systemd-nspawn container (its own network namespace, so the host's
# firewall is never touched), install pdsafelist with the shipped unit, and
# start it with each host sink type. The host needs no systemd of its own:
# a check unit inside the container runs the steps at boot, writes its
# report, and powers the container off.
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

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$root/usr/bin/pdsafelist" ./cmd/pdsafelist
install -m 0644 scripts/systemd/pdsafelist.service scripts/systemd/pdsafelist.timer "$root/etc/systemd/system/"
# A minimal host: none of the optional paths exist.
rm -rf "$root/etc/nftables.d" "$root/etc/iptables" "$root/var/lib/prometheus" "$root/var/lib/pdsafelist" "$root/root/report.txt"
install -d "$root/etc/pdsafelist"

cat >"$root/usr/local/sbin/pdsl-check" <<'CHECK'
#!/bin/bash
# Runs inside the container at boot; the report goes to /root/report.txt.
exec >/root/report.txt 2>&1
set -u
config() {
	cat >/etc/pdsafelist/pdsafelist.yaml <<CFG
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
run() {
	systemctl daemon-reload
	if systemctl start pdsafelist.service; then
		echo "PASS $1: result=$(systemctl show -P Result pdsafelist.service) status=$(systemctl show -P ExecMainStatus pdsafelist.service)"
	else
		echo "FAIL $1: result=$(systemctl show -P Result pdsafelist.service) status=$(systemctl show -P ExecMainStatus pdsafelist.service)"
		journalctl -u pdsafelist.service --no-pager -n 15 -o cat
	fi
}
echo "systemd: $(systemctl --version | sed -n 1p)"
echo "missing on this host: $(for d in /etc/nftables.d /etc/iptables /var/lib/prometheus/node-exporter; do [ -e $d ] || printf '%s ' $d; done)"

# 1. Nothing optional exists: nftables into the state directory (loaded),
# iptables live on the nf_tables backend.
config "  - {type: nftables, path: /var/lib/pdsafelist/pagerduty.nft, apply: true, enforce: ingress}
  - {type: iptables, enforce: ingress}"
run "minimal host: nftables (apply) + iptables (nf_tables)"
nft list table inet pdsafelist | grep -F 44.242.69.192 >/dev/null && echo "  nft table loaded with the set"
iptables -S PDSAFELIST-IN | grep -F 44.242.69.192 >/dev/null && echo "  iptables (nf_tables) chain holds the set"

# 2. The legacy backend creates /run/xtables.lock under ProtectSystem=strict.
update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null
run "iptables live on the legacy backend"
iptables-legacy -S PDSAFELIST-IN | grep -F 44.242.69.192 >/dev/null && echo "  legacy chain holds the set"

# 3. The README's paths, once their directories exist, and the metrics file.
mkdir -p /etc/nftables.d /etc/iptables /var/lib/prometheus/node-exporter
config "  - {type: nftables, path: /etc/nftables.d/pagerduty.nft}
  - {type: iptables-file, path: /etc/iptables/pdsafelist.v4}"
run "README paths: nftables /etc/nftables.d, iptables-file /etc/iptables"
ls /etc/nftables.d/pagerduty.nft /etc/iptables/pdsafelist.v4 /etc/iptables/pdsafelist.v6 /var/lib/prometheus/node-exporter/pdsafelist.prom
grep -E '^pdsafelist_run_success' /var/lib/prometheus/node-exporter/pdsafelist.prom

# 4. A second activation changes nothing; the timer is accepted.
run "second activation"
systemctl enable --now pdsafelist.timer >/dev/null 2>&1 && systemctl list-timers pdsafelist.timer --no-pager | sed -n 2p
echo "DONE"
systemctl poweroff --no-block
CHECK
chmod +x "$root/usr/local/sbin/pdsl-check"
cat >"$root/etc/systemd/system/pdsl-check.service" <<'UNIT'
[Unit]
Description=pdsafelist systemd check
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/pdsl-check
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/pdsl-check.service "$root/etc/systemd/system/multi-user.target.wants/pdsl-check.service"

# nspawn removes its scratch directory only from a tmpfs, and registers
# with machined only when the host runs systemd.
mkdir -p /run/systemd/nspawn
mountpoint -q /run/systemd/nspawn || mount -t tmpfs tmpfs /run/systemd/nspawn
timeout 300 systemd-nspawn -q -D "$root" --private-network --register=no --keep-unit -b >/tmp/nspawn-console.log 2>&1 || true
cat "$root/root/report.txt"
grep -q '^DONE' "$root/root/report.txt" && ! grep -q '^FAIL' "$root/root/report.txt"
