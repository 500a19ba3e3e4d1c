#!/usr/bin/env bash
# Validate .goreleaser.yaml with goreleaser itself (installed from the Go
# module proxy), then build a linux/amd64 snapshot (PDSAFELIST_RELEASE_ALL=1:
# every target) and check that the archive holds every file the docs name
# and the .deb what the packages promise (scripts/packages_test.go,
# TestGoreleaserSnapshot). Building goreleaser takes several minutes the
# first time, and the release build about 8 minutes with a cold cache.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"
command -v goreleaser >/dev/null || go install github.com/goreleaser/goreleaser/v2@v2.17.0
goreleaser check
PDSAFELIST_RELEASE_TEST=1 go test -count=1 -run 'TestGoreleaserSnapshot|TestArchive|TestPackages' ./scripts
