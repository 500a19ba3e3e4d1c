#!/usr/bin/env bash
# Offline demo: serve a copy of the snapshot in testdata/snapshot as
# PagerDuty's DNS names and published lists on loopback, then run the job
# against it and show what makes it safe: a dry run, the sync, convergence
# under DNS rotation, a source failing (its set freezes, nothing is
# removed), a hostile answer (0.0.0.0/0 refused), and recovery.
# No internet and no root needed; with root and nft, every file is checked
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
# A copy, so the demo can break a list; the stand-in reads each list per
# request.
snap="$work/snapshot"
cp -r testdata/snapshot "$snap"
"$work/standin" -snapshot "$snap" -flags-out "$work/flags" >/dev/null &
pid=$!
for _ in $(seq 100); do [ -s "$work/flags" ] && break; sleep 0.1; done
[ -s "$work/flags" ] || { echo "demo: the stand-in did not start" >&2; exit 1; }
read -ra flags <"$work/flags"

nft="$out/pagerduty.nft"
args=(--sink "nftables:$nft" --state-dir "$out/state")
step() { printf '\n==> %s\n' "$*"; }
show() { echo "\$ pdsafelist $*"; }
# run saves a command's output in $work/last and returns its exit code.
run() {
	set +e
	"$work/pdsafelist" "$@" "${flags[@]}" >"$work/last" 2>&1
	code=$?
	set -e
	return 0
}
# must fails the demo unless the last command exited with $1.
must() {
	if [ "$code" -ne "$1" ]; then
		sed 's/^/  | /' "$work/last"
		echo "demo: exit $code, want $1" >&2
		exit 1
	fi
}
summary() { grep -E '^(Plan:|No changes)' "$work/last" | sed 's/^/  /'; }
count() { grep -cE '^[[:space:]]+[0-9a-f:.]+/[0-9]+,?$' "$nft"; }

step "1. Dry run: the plan, nothing written"
show sync --dry-run "${args[@]}"
run sync --dry-run "${args[@]}"
must 0
cat "$work/last"
cp "$work/last" "$work/dry"

step "2. Sync: apply it"
show sync "${args[@]}"
run sync "${args[@]}"
must 0
summary
# events.pagerduty.com answers 3 of its 6 addresses per query (GSLB), so
# each run sees a different subset: say where this plan differs.
diff <(grep -E '^  [+-] ' "$work/dry") <(grep -E '^  [+-] ' "$work/last") >"$work/rot" || true
if [ -s "$work/rot" ]; then
	echo "  DNS rotation: events.pagerduty.com answers a subset each time, so this plan differs from the dry run's:"
	grep -E '^[<>]' "$work/rot" | sed -e 's/^</    dry run only:/' -e 's/^>/    sync only:   /'
else
	echo "  (the same plan as the dry run: DNS rotation happened to give the same subset)"
fi
echo "  $(count) addresses in $nft"

step "3. Re-run until nothing changes: the union and retention collect the rotation"
for i in 1 2 3 4 5 6 7 8; do
	run sync "${args[@]}" --detailed-exitcode
	[ "$code" -eq 0 ] || [ "$code" -eq 2 ] || must 0
	echo "  run $i, exit code $code:"
	grep -E '^  [+-] ' "$work/last" | grep -vE '^  [+-] (add|remove)$' | sed 's/^/  /' || true
	summary
	[ "$code" -eq 0 ] && break
done
must 0
before=$(count)

step "4. A source fails: the webhook list returns 404"
mv "$snap/webhooks-us-service-region-json" "$work/hooks.saved"
show sync "${args[@]}"
run sync "${args[@]}"
must 1
sed 's/^/  | /' "$work/last"
echo "  exit 1: the webhooks set is frozen; the file still holds $(count) of $before addresses, nothing removed"
[ "$(count)" -eq "$before" ] || { echo "demo: a failed source removed addresses" >&2; exit 1; }
mv "$work/hooks.saved" "$snap/webhooks-us-service-region-json"

step "5. A hostile answer: the REST API list says 0.0.0.0/0"
cp "$snap/rest-api-us-service-region-json" "$work/rest.saved"
echo '["0.0.0.0/0"]' >"$snap/rest-api-us-service-region-json"
sum=$(sha256sum "$nft")
show sync "${args[@]}"
run sync "${args[@]}"
must 3
sed 's/^/  | /' "$work/last"
[ "$(sha256sum "$nft")" = "$sum" ] || { echo "demo: a refused answer changed the file" >&2; exit 1; }
echo "  exit 3: refused by the unsafe_prefix guard; the api set is frozen and the file is unchanged"
mv "$work/rest.saved" "$snap/rest-api-us-service-region-json"

step "6. The sources are back: nothing to change"
show sync "${args[@]}" --detailed-exitcode
run sync "${args[@]}" --detailed-exitcode
must 0
summary

echo
echo "Demo done. The nftables file and the state are in $out"
