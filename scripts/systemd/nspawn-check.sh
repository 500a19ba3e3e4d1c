#!/usr/bin/env bash
# Boot a copy of a minimal Debian 12 with a real systemd in a systemd-nspawn
# container (its own network namespace, so the host's firewall is never
# touched), install the release's .deb with dpkg -i, and run the packaged
# unit there: each host sink type, then the template page's nginx and
# HAProxy examples with their drop-ins, against nginx and HAProxy running as
# services. A check unit inside the container runs the steps at boot,
# writes its report, and powers the container off.
#
# The usual way to run it (builds the .deb with a goreleaser snapshot, the
# root with nspawn-root.sh, and the examples from docs/sinks/template.md):
#
#   PDSAFELIST_NSPAWN_TEST=1 go test -count=1 -v -run TestPackageInSystemdContainer ./scripts
#
# By hand, with the files that test writes into EXAMPLES (nginx-site.conf,
# nginx-sink.yaml, haproxy.cfg, haproxy-sink.yaml):
#
#   bash scripts/systemd/nspawn-check.sh ROOT DEB EXAMPLES
#
# It needs root and systemd-nspawn (systemd-container); about a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=${1:?usage: nspawn-check.sh ROOT DEB EXAMPLES}
deb=${2:?usage: nspawn-check.sh ROOT DEB EXAMPLES}
examples=${3:?usage: nspawn-check.sh ROOT DEB EXAMPLES}
[ -f "$root/etc/pdsl-root" ] || { echo "nspawn-check.sh: $root was not built by nspawn-root.sh" >&2; exit 1; }

# Boot a copy: the cached root stays as debootstrap left it, so every run
# is a first install.
run=$root.run
rm -rf "$run"
cp -a --reflink=auto "$root" "$run"
trap 'rm -rf "$run"' EXIT
install -d "$run/root/pdsl"
install -m 0644 "$deb" "$run/root/pdsl/pdsafelist.deb"
for f in nginx-site.conf nginx-sink.yaml haproxy.cfg haproxy-sink.yaml; do
	install -m 0644 "$examples/$f" "$run/root/pdsl/$f"
done

cat >"$run/usr/local/sbin/pdsl-check" <<'CHECK'
#!/bin/bash
# Runs inside the container at boot; the report goes to /root/report.txt.
exec >/root/report.txt 2>&1
set -u
in=/root/pdsl
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; }
# config SET_ADDRESSES SINKS_YAML: the config the packaged unit reads.
config() {
	{
		cat <<CFG
sets: [office]
catalog:
  office:
    direction: ingress
    ports: [443]
    static: [$1]
sinks:
CFG
		printf '%s\n' "$2"
	} >/etc/pdsafelist/pdsafelist.yaml
}
# webhooks ADDRESSES SINK_FILE: the template examples route the webhooks set.
webhooks() {
	{
		cat <<CFG
sets: [webhooks]
catalog:
  webhooks:
    urls: []
    static: [$1]
sinks:
CFG
		sed 's/^/  /' "$2"
	} >/etc/pdsafelist/pdsafelist.yaml
}
# unit WANT NAME: start the packaged unit; WANT is pass or fail.
unit() {
	local want=$1 name=$2 got=pass
	systemctl daemon-reload
	systemctl reset-failed pdsafelist.service 2>/dev/null
	systemctl start pdsafelist.service 2>/dev/null || got=fail
	local what="result=$(systemctl show -P Result pdsafelist.service) status=$(systemctl show -P ExecMainStatus pdsafelist.service)"
	if [ "$got" = "$want" ]; then
		ok "$name: $what"
		[ "$got" = fail ] && journalctl -u pdsafelist.service --no-pager -n 8 -o cat | grep '"level":"ERROR"' | tail -1 | sed 's/^/  /'
	else
		bad "$name: $what (want the unit to $want)"
		journalctl --no-pager -n 30 -o short | sed 's/^/  journal: /'
	fi
	return 0
}
# expect WHAT COMMAND...: a check that must hold.
expect() {
	local what=$1
	shift
	local out
	if out=$("$@" 2>&1); then ok "  $what"; else bad "  $what ${out:0:200}"; fi
}
# status WANT SRC PORT: the HTTP status of /pagerduty/ from SRC (an address
# on lo, inside the container's network namespace) to 193.0.2.1:PORT is
# WANT within 10 s. nginx and HAProxy reload in the background after the
# signal, so the new configuration serves a moment later.
status() {
	local got
	for _ in $(seq 50); do
		got=$(curl -s -o /dev/null -m 5 -w '%{http_code}' --interface "$2" "http://193.0.2.1:$3/pagerduty/hook")
		[ "$got" = "$1" ] && return 0
		sleep 0.2
	done
	echo "got $got" >&2
	return 1
}
wait_active() {
	for _ in $(seq 50); do
		systemctl is-active -q "$1" && return 0
		sleep 0.2
	done
	return 1
}

echo "debian $(cat /etc/debian_version); $(systemctl --version | sed -n 1p); $(nginx -v 2>&1); $(haproxy -v | sed -n 1p)"

# 0. The package, installed as an operator would.
if dpkg -i $in/pdsafelist.deb >/root/dpkg.log 2>&1; then
	ok "dpkg -i: $(dpkg-query -W -f '${Package} ${Version} ${Architecture}' pdsafelist); $(pdsafelist version 2>&1)"
else
	bad "dpkg -i"
	cat /root/dpkg.log
fi
for f in /usr/bin/pdsafelist /usr/lib/systemd/system/pdsafelist.service /usr/lib/systemd/system/pdsafelist.timer \
	/etc/pdsafelist/pdsafelist.yaml /usr/share/man/man1/pdsafelist.1 /usr/share/man/man1/pdsafelist-sync.1 \
	/usr/share/bash-completion/completions/pdsafelist /usr/share/zsh/vendor-completions/_pdsafelist \
	/usr/share/fish/vendor_completions.d/pdsafelist.fish /usr/share/doc/pdsafelist/examples/cron.d/pdsafelist \
	/usr/share/doc/pdsafelist/examples/systemd/nginx.conf /usr/share/doc/pdsafelist/examples/systemd/haproxy.conf \
	/usr/share/doc/pdsafelist/examples/sources.example.yaml; do
	[ -f $f ] || bad "the package did not install $f"
done
expect "state directory /var/lib/pdsafelist is root's, mode 700" test "$(stat -c '%U %a' /var/lib/pdsafelist)" = "root 700"
expect "default config mode 640" test "$(stat -c '%a' /etc/pdsafelist/pdsafelist.yaml)" = 640
# Debian's systemd names /usr/lib/systemd/system by its /lib alias.
unitpath=$(systemctl show -P FragmentPath pdsafelist.service)
expect "the unit systemd loads is the package's ($unitpath)" test "$(readlink -f "$unitpath")" = /usr/lib/systemd/system/pdsafelist.service
expect "the timer is installed, not enabled" test "$(systemctl is-enabled pdsafelist.timer)" = disabled
echo "missing on this host: $(for d in /etc/nftables.d /etc/iptables /var/lib/prometheus/node-exporter; do [ -e $d ] || printf '%s ' $d; done)"

# 1. Nothing optional exists: nftables into the state directory (loaded),
# iptables live on the nf_tables backend.
config "44.242.69.192/32, 2600:1f14:d0c:9d00::a1/128" "  - {type: nftables, path: /var/lib/pdsafelist/pagerduty.nft, apply: true, enforce: ingress}
  - {type: iptables, enforce: ingress}"
unit pass "minimal host: nftables (apply) + iptables (nf_tables)"
expect "nft table loaded with the set" sh -c 'nft list table inet pdsafelist | grep -F 44.242.69.192'
expect "iptables (nf_tables) chain holds the set" sh -c 'iptables -S PDSAFELIST-IN | grep -F 44.242.69.192'

# 2. The legacy backend creates /run/xtables.lock under ProtectSystem=strict.
update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null
unit pass "iptables live on the legacy backend"
expect "legacy chain holds the set" sh -c 'iptables-legacy -S PDSAFELIST-IN | grep -F 44.242.69.192'
update-alternatives --set iptables /usr/sbin/iptables-nft >/dev/null
update-alternatives --set ip6tables /usr/sbin/ip6tables-nft >/dev/null

# 3. The README's paths, once their directories exist, and the metrics file.
mkdir -p /etc/nftables.d /etc/iptables /var/lib/prometheus/node-exporter
config "44.242.69.192/32" "  - {type: nftables, path: /etc/nftables.d/pagerduty.nft}
  - {type: iptables-file, path: /etc/iptables/pdsafelist.v4}"
unit pass "README paths: nftables /etc/nftables.d, iptables-file /etc/iptables"
for f in /etc/nftables.d/pagerduty.nft /etc/iptables/pdsafelist.v4 /etc/iptables/pdsafelist.v6 /var/lib/prometheus/node-exporter/pdsafelist.prom; do
	expect "wrote $f" test -s $f
done
expect "metrics say the run succeeded" grep -Eq '^pdsafelist_run_success(\{[^}]*\})? 1$' /var/lib/prometheus/node-exporter/pdsafelist.prom

# 4. A second activation changes nothing; the timer starts.
unit pass "second activation"
systemctl enable --now pdsafelist.timer >/dev/null 2>&1
expect "timer active" systemctl is-active -q pdsafelist.timer
systemctl list-timers pdsafelist.timer --no-pager | sed -n 2p
systemctl disable --now pdsafelist.timer >/dev/null 2>&1

# Addresses inside the container's network namespace: 193.0.2.1 serves,
# the others are clients (two on the list, one never).
for a in 193.0.2.1 44.242.69.192 52.89.71.166 54.213.187.133; do ip addr add $a/32 dev lo; done

# 5. The nginx example (docs/sinks/template.md) under the packaged unit.
expect "nginx runs as a service" wait_active nginx
rm -f /etc/nginx/sites-enabled/default
webhooks "44.242.69.192" $in/nginx-sink.yaml
unit fail "nginx example without its drop-in fails (read-only /etc/nginx)"
install -D -m 0644 /usr/share/doc/pdsafelist/examples/systemd/nginx.conf /etc/systemd/system/pdsafelist.service.d/nginx.conf
# The first sync writes the list before nginx's configuration includes it
# (nginx refuses an include of a missing file).
unit pass "nginx example with the nginx drop-in: first sync"
expect "the include allows 44.242.69.192" grep -qx 'allow 44.242.69.192/32;' /etc/nginx/pagerduty-webhooks.conf
install -m 0644 $in/nginx-site.conf /etc/nginx/sites-enabled/pdsl
systemctl reload nginx
expect "listed 44.242.69.192 gets 200 from nginx" status 200 44.242.69.192 80
expect "unlisted 52.89.71.166 gets 403 from nginx" status 403 52.89.71.166 80
webhooks "44.242.69.192, 52.89.71.166" $in/nginx-sink.yaml
# Each grant of the drop-in is needed: without any one of them the check
# (nginx -t) fails and the unit with it.
dropin=/etc/systemd/system/pdsafelist.service.d/nginx.conf
cp $dropin /root/nginx.conf.full
for grant in CAP_DAC_OVERRIDE CAP_NET_BIND_SERVICE /var/log/nginx; do
	sed -E "/^(ReadWritePaths|CapabilityBoundingSet|AmbientCapabilities)=/s# ?$grant##" /root/nginx.conf.full >$dropin
	unit fail "nginx example with the drop-in less $grant fails"
done
cp /root/nginx.conf.full $dropin
unit pass "nginx example: a second address, checked and reloaded by the unit"
expect "nginx -T holds the new address" sh -c 'nginx -T 2>/dev/null | grep -qx "allow 52.89.71.166/32;"'
expect "52.89.71.166 gets 200 after the unit's reload" status 200 52.89.71.166 80
expect "unlisted 54.213.187.133 still gets 403" status 403 54.213.187.133 80
echo 'bogus_directive on;' >/etc/nginx/conf.d/broken.conf
webhooks "44.242.69.192, 52.89.71.166, 54.213.187.133" $in/nginx-sink.yaml
unit fail "nginx example: nginx -t rejects the configuration, the unit fails"
expect "the old include stays" sh -c '! grep -q 54.213.187.133 /etc/nginx/pagerduty-webhooks.conf && grep -q 52.89.71.166 /etc/nginx/pagerduty-webhooks.conf'
expect "nginx still serves the old list" status 403 54.213.187.133 80
rm -f /etc/nginx/conf.d/broken.conf /etc/systemd/system/pdsafelist.service.d/nginx.conf

# 6. The HAProxy example under the packaged unit. nginx becomes the
# example's backend (127.0.0.1:9000).
printf 'server {\n    listen 127.0.0.1:9000;\n    return 200 "app\\n";\n}\n' >/etc/nginx/sites-enabled/pdsl
systemctl reload nginx
expect "haproxy runs as a service" wait_active haproxy
# The nginx case's addresses stay in the state (retention): start afresh.
rm -f /var/lib/pdsafelist/state*
webhooks "44.242.69.192" $in/haproxy-sink.yaml
unit fail "HAProxy example without its drop-in fails (read-only /etc/haproxy)"
install -D -m 0644 /usr/share/doc/pdsafelist/examples/systemd/haproxy.conf /etc/systemd/system/pdsafelist.service.d/haproxy.conf
unit pass "HAProxy example with the haproxy drop-in: first sync"
expect "the list holds 44.242.69.192" grep -qx '44.242.69.192/32' /etc/haproxy/pagerduty.lst
install -m 0644 $in/haproxy.cfg /etc/haproxy/haproxy.cfg
systemctl reload haproxy
expect "haproxy -c accepts the example configuration with the list" haproxy -c -f /etc/haproxy/haproxy.cfg
expect "listed 44.242.69.192 gets 200 through HAProxy" status 200 44.242.69.192 8080
expect "unlisted 52.89.71.166 gets 403 from HAProxy" status 403 52.89.71.166 8080
webhooks "44.242.69.192, 52.89.71.166" $in/haproxy-sink.yaml
unit pass "HAProxy example: a second address, checked and reloaded by the unit"
expect "52.89.71.166 gets 200 after the unit's reload" status 200 52.89.71.166 8080
expect "unlisted 54.213.187.133 still gets 403" status 403 54.213.187.133 8080
printf '\nfrontend broken\n    bogus_keyword yes\n' >>/etc/haproxy/haproxy.cfg
webhooks "44.242.69.192, 52.89.71.166, 54.213.187.133" $in/haproxy-sink.yaml
unit fail "HAProxy example: haproxy -c rejects the configuration, the unit fails"
expect "the old list stays" sh -c '! grep -q 54.213.187.133 /etc/haproxy/pagerduty.lst && grep -q 52.89.71.166 /etc/haproxy/pagerduty.lst'

echo "DONE"
systemctl poweroff --no-block
CHECK
chmod +x "$run/usr/local/sbin/pdsl-check"
cat >"$run/etc/systemd/system/pdsl-check.service" <<'UNIT'
[Unit]
Description=pdsafelist package check
After=multi-user.target nginx.service haproxy.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/pdsl-check
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/pdsl-check.service "$run/etc/systemd/system/multi-user.target.wants/pdsl-check.service"

# nspawn removes its scratch directory only from a tmpfs, and registers
# with machined only when the host runs systemd.
mkdir -p /run/systemd/nspawn
mountpoint -q /run/systemd/nspawn || mount -t tmpfs tmpfs /run/systemd/nspawn
timeout 300 systemd-nspawn -q -D "$run" --private-network --register=no --keep-unit -b >"$run.console.log" 2>&1 || true
if [ ! -f "$run/root/report.txt" ]; then
	tail -30 "$run.console.log"
	echo "nspawn-check.sh: the container wrote no report (console: $run.console.log)" >&2
	exit 1
fi
cat "$run/root/report.txt"
grep -q '^DONE' "$run/root/report.txt" && ! grep -q '^FAIL' "$run/root/report.txt"
