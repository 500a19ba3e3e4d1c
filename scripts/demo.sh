#!/usr/bin/env bash
# Offline demo: serve the snapshot in testdata/snapshot as PagerDuty's DNS
# names and published lists on loopback, then run the whole job against it:
# resolve, a dry run, a sync into an nftables file, and a re-run.
# No internet and no root needed; with root and nft, the file is checked
# with `nft -c` before it is written.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${DEMO_OUT:-$(mktemp -d)}
mkdir -p "$out"
work=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

echo "==> building pdsafelist and the PagerDuty stand-in"
go build -o "$work/pdsafelist" ./cmd/pdsafelist
go build -o "$work/standin" ./scripts/standin
"$work/standin" -snapshot testdata/snapshot -flags-out "$work/flags" >/dev/null &
pid=$!
for _ in $(seq 100); do [ -s "$work/flags" ] && break; sleep 0.1; done
[ -s "$work/flags" ] || { echo "demo: the stand-in did not start" >&2; exit 1; }
read -ra flags <"$work/flags"

# Every step must succeed: a failing step ends the demo with its exit code.
pd() {
	echo
	echo "\$ pdsafelist $*"
	"$work/pdsafelist" "$@" "${flags[@]}"
}
nft="$out/pagerduty.nft"
state=(--state-dir "$out/state")

pd resolve
pd sync --dry-run --sink "nftables:$nft" "${state[@]}"
pd sync --sink "nftables:$nft" "${state[@]}"
# Route 53 style subset answers rotate: union and retention collect them,
# so a re-run adds what the first run did not see, then settles: the last
# run must exit 0 under --detailed-exitcode (2 would mean changes).
pd sync --sink "nftables:$nft" "${state[@]}"
pd sync --sink "nftables:$nft" "${state[@]}" --detailed-exitcode

echo
echo "==> $nft (first lines)"
sed -n '1,20p' "$nft"
echo "..."
echo
echo "Demo done. The nftables file and the state are in $out"
