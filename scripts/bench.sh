#!/usr/bin/env bash
# Benchmarks for the table in docs/benchmarks.md. Ratios matter more than absolute times:
# each figure is compared with something measured in the same run.
#   resolve    all default sets, US and EU, against the stand-in with 50 ms
#              added to every DNS answer; x-latency = wall time / 50 ms
#   cli-resolve the same through the built CLI as a process, against
#              `pdsafelist version`'s start-up (round trips = (resolve -
#              version) / 50 ms; target <= 2.2)
#   aggregate  1,000,000 random IPv4 addresses vs FireHOL iprange --optimize
#   end to end 10k/100k/1M public IPv4 addresses served as HTTPS lists through
#              the CLI (resolve -o json, sync --dry-run, a first and a
#              no-change sync into an nftables file) vs iprange --optimize
#              on the same addresses: CPU ratio, peak RSS, identical CIDRs
#   nftables   plan and render 100,000 prefixes; load the file with nft -f
#              in a network namespace (root); a no-change apply=true run
#              with the live check vs a fresh nft -f in the same iteration
#              (x-load wall, cpu-x-load CPU; target <= 1)
#   nft live   the built CLI with apply=true at 100,000 prefixes in a
#              namespace (root): one address added vs the hand `nft add
#              element` (target <= 1x CPU), a no-change run vs a fresh
#              `nft -f` into an EMPTY namespace (target <= 0.5x CPU); each
#              with the stamp and after a change elsewhere (full netlink
#              read); docs/benchmarks-nftables.md
#   nft -c     check a 1,000,000-element file in pieces and whole (root)
#   iptables   apply 10,000 prefixes as rules and as an ipset (root); an ipset
#              of 100,000 members with one address changed vs iptables -S
#              plus ipset add by hand (x-hand) and vs the kernel's dump of
#              the set (x-dump), and its process count
#   memory     peak RSS of a first, a no-change, a one-change and a one-gone
#              sync of 1,000,000 addresses from text lists into nftables
#              (baseline), template and live iptables with ipset; a text
#              list vs JSON
#   ec2        API calls for a first and a second sync (moto_server)
# Needs: iprange, nft, iptables, ipset, ip, GNU time (Debian packages), moto_server,
# and root for the namespace benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3)"

echo
echo "== resolve (x-latency: wall time as a multiple of one 50 ms DNS round trip; target <= 2.2)"
go test -run '^$' -bench 'ResolveAllSetsDelayed' -benchtime 20x ./pkg/cmd/resolve/ | grep -E '^Benchmark'

echo
echo "== resolve through the CLI process, against pdsafelist version's start-up"
go run ./scripts/bench/e2e -latency -runs 9 2>/dev/null | grep -v 'TLS handshake'

echo
echo "== aggregate (target: <= 2x iprange's time, < 150 MB peak RSS)"
go run ./scripts/bench/aggregate -n 1000000 -runs 3

echo
echo "== end to end through the CLI vs iprange --optimize (targets: resolve and dry run"
echo "   <= 2x iprange's CPU and < 150 MB; sync < 400 MB and linear in the size)"
for n in 10000 100000 1000000; do
	go run ./scripts/bench/e2e -n "$n" -runs 3
done

echo
echo "== the sync path's parts at 10k / 100k / 1M: flat ns and B per entry is linear"
go test -run '^$' -bench 'Calculate$' -benchtime 3x -benchmem ./pkg/plan/ | grep -E '^Benchmark'
go test -run '^$' -bench 'StateRun' -benchtime 3x -benchmem ./pkg/state/ | grep -E '^Benchmark'
go test -run '^$' -bench 'FileRun' -benchtime 3x -benchmem ./pkg/sink/nftables/ | grep -E '^Benchmark'
go test -run '^$' -bench 'SyncText' -benchtime 3x -benchmem ./pkg/render/ | grep -E '^Benchmark'

echo
echo "== plan and render 100,000 prefixes to nftables (target < 1 s), nft -f in a namespace,"
echo "   and a no-change apply=true run with the live check vs nft -f (x-load, target <= 1)"
go test -run '^$' -bench 'PlanRender100k|NftLoad100k|NoChangeApply100k' -benchtime 3x -benchmem ./pkg/sink/nftables/ | grep -E '^Benchmark'

echo
echo "== nftables live through the CLI, 100,000 prefixes: one address added vs nft add element,"
echo "   no change vs a fresh nft -f into an empty namespace (CPU of the run and its children)"
go run ./scripts/bench/nftlive -n 100000 -runs 3

echo
echo "== nft -c of a 1,000,000-element file, in pieces of 100,000 and whole (nft's CPU and peak RSS)"
go test -run '^$' -bench 'Check1M' -benchtime 1x ./pkg/sink/nftables/ | grep -E '^Benchmark'

if [ -d pkg/sink/iptables ]; then
	echo
	echo "== iptables: apply 10,000 prefixes as rules and as an ipset, in a namespace"
	go test -run '^$' -bench 'Apply10k' -benchtime 3x ./pkg/sink/iptables/ | grep -E '^Benchmark'
	echo
	echo "== ipset of 100,000 members, one address changed: the sink's read, plan and apply (CPU with"
	echo "   its children) vs iptables -S plus ipset add by hand in the same iteration, started inside the"
	echo "   namespace (x-hand, target <= 1), vs the kernel's dump of the set alone (x-dump, the floor of a"
	echo "   run that checks every member), and the processes it starts (target <= 4)"
	go test -run '^$' -bench 'IPSetOneChange100k' -benchtime 5x ./pkg/sink/iptables/ | grep -E '^Benchmark'
	go test -count=1 -run 'TestLiveIPSetOneChangeProcesses' -v ./pkg/sink/iptables/ | grep -E '^(ok|FAIL|--- )|processes'
fi

echo
echo "== peak RSS at 1,000,000 addresses from ten text lists, a first, a no-change, a one-change and a one-gone sync through the CLI:"
echo "   the nftables file sink (baseline), the template sink and live iptables with ipset (root); target < 300 MB"
go run ./scripts/bench/e2e -n 1000000 -text -sinks nftables,template,iptables
echo
echo "== a text list vs the same addresses as JSON: resolve -o json through the CLI, and the parser (text <= JSON)"
go run ./scripts/bench/e2e -n 1000000 -only resolve | grep -E 'resolve -o json'
go run ./scripts/bench/e2e -n 1000000 -only resolve -text | grep -E 'resolve -o json'
go test -run '^$' -bench 'Parse100k/(Text|Addresses)' -benchmem ./pkg/source/listformat/ | grep -E '^Benchmark'

if [ -d pkg/sink/ec2 ]; then
	echo
	echo "== EC2 API calls for a first and a second sync of the default sets (moto_server)"
	go test -count=1 -run 'TestMotoCallCounts' -v ./pkg/sink/ec2/ | grep -E 'sync calls|^(ok|FAIL|--- )'
fi
