#!/usr/bin/env bash
# Rewrite every golden file under testdata/ from the current code. Review
# the diff before committing: a golden change is a behaviour change.
set -euo pipefail
cd "$(dirname "$0")/.."
go test ./... -run . -update >/dev/null
git status --short -- '*testdata*'
