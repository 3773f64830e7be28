#!/usr/bin/env bash
# Runs every `func FuzzXxx(f *testing.F)` in the module (committed or not)
# for $FUZZTIME each. A failing input is written by `go test` to the
# package's testdata/fuzz/FuzzXxx/, where it becomes a regression seed that
# `make test` runs from then on: the script lists those new files at the
# end, to be committed. internal/archtest checks that every target has a
# committed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
status=0
while IFS=: read -r file _ line; do
	name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
	pkg=./$(dirname "$file")
	echo "== $pkg $name ($FUZZTIME)"
	"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" || status=1
done < <(git grep --untracked -n -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' -- '*_test.go')
new=$(git status --porcelain --untracked-files=all -- '*testdata/fuzz/*' | awk '{print $2}')
if [ -n "$new" ]; then
	echo "== new regression seeds (failing inputs; commit them with the fix):"
	echo "$new"
fi
exit $status
