#!/usr/bin/env bash
# Rewrite every golden file under testdata/ from the current code. Review
# the diff before committing: a golden change is a behaviour change.
set -euo pipefail
cd "$(dirname "$0")/.."
# Only packages that define -update accept it.
pkgs=$(grep -rlE --include='*_test.go' 'golden\.Assert|flag\.Bool\("update"' pkg cmd | xargs -n1 dirname | sort -u | sed 's|^|./|')
go test $pkgs -count=1 -update >/dev/null
git status --short -- '*testdata*'
