#!/usr/bin/env bash
# Build a release binary by hand, without goreleaser or make, with the same
# flags as .goreleaser.yaml: static (CGO_ENABLED=0, no libc needed),
# -trimpath (no build paths inside), -s -w (no symbol table or DWARF), and
# the version, commit and date in `pdsafelist version`. Man pages and shell
# completions come from the command tree (scripts/gendocs).
#
#   scripts/release-build.sh                 # dist/release/pdsafelist
#   VERSION=1.2.3 GOARCH=arm64 scripts/release-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-dist/release}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
version=${version#v}
commit=$(git rev-parse HEAD 2>/dev/null || echo none)
# The commit's date, not the clock's: the same commit builds the same bytes.
date=$(git log -1 --format=%cI 2>/dev/null || echo unknown)
pkg=github.com/pdsafelist/pdsafelist/pkg/build
mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X $pkg.Version=$version -X $pkg.Commit=$commit -X $pkg.Date=$date" \
	-o "$out/pdsafelist" ./cmd/pdsafelist
go run ./scripts/gendocs -out "$out/docs"
echo "$out/pdsafelist: $(wc -c <"$out/pdsafelist") bytes; $("$out/pdsafelist" version 2>/dev/null || true)"
