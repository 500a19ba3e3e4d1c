#!/usr/bin/env bash
# Validate .goreleaser.yaml with goreleaser itself (installed from the Go
# module proxy; v2.15.4 is the newest that builds with Go 1.26).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v goreleaser >/dev/null || go install github.com/goreleaser/goreleaser/v2@v2.15.4
"$(go env GOPATH)/bin/goreleaser" check
