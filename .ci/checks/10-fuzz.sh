# shellcheck shell=bash
# Runs every fuzz target of the module for a short bounded time, one at a
# time (go test -fuzz takes a single target), and fails on the first crash.
# A crash leaves the input that caused it under testdata/fuzz/<target>/ of
# its package: commit it with the fix, so that plain `go test` replays it.
#
# Sourced by .ci/run (under set -euo pipefail) from the repository root;
# it also runs on its own: bash .ci/checks/10-fuzz.sh. MPAUTHX_FUZZTIME
# sets the budget per target: a count of executions (default 100000x, 10-20 s each
# here) rather than a duration, because Go 1.26's fuzz
# coordinator can fail a duration-bounded run with a spurious "context
# deadline exceeded" when the deadline catches a busy worker
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
(
	set -euo pipefail
	cd "$(dirname "${BASH_SOURCE[0]}")/../.."
	fuzztime=${MPAUTHX_FUZZTIME:-100000x}
	# go test -list prints a package's matching names, then "ok <package>".
	list=$(go test -list '^Fuzz' ./...)
	targets=()
	pending=()
	while read -r line; do
		case $line in
		Fuzz*) pending+=("$line") ;;
		"ok "*)
			read -r _ pkg _ <<<"$line"
			for target in "${pending[@]}"; do targets+=("$pkg $target"); done
			pending=()
			;;
		esac
	done <<<"$list"
	if ((${#targets[@]} == 0)); then
		echo "no fuzz targets found" >&2
		exit 1
	fi
	for pt in "${targets[@]}"; do
		read -r pkg target <<<"$pt"
		printf -- '--- fuzz %s %s for %s\n' "$pkg" "$target" "$fuzztime"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 10s "$pkg"
	done
	echo "fuzzed ${#targets[@]} targets for $fuzztime each"
)
