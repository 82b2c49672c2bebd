# shellcheck shell=bash
# Runs every fuzz target of the module for a short bounded time, one at a
# time (go test -fuzz takes a single target), and fails on the first crash.
# A crash leaves the input that caused it under testdata/fuzz/<target>/ of
# its package: commit it with the fix, so that plain `go test` replays it.
#
# Sourced by .ci/run (under set -euo pipefail) from the repository root;
# it also runs on its own: bash .ci/checks/10-fuzz.sh. MPAUTHX_FUZZTIME
# sets the time per target (default 10s).
(
	set -euo pipefail
	cd "$(dirname "${BASH_SOURCE[0]}")/../.."
	fuzztime=${MPAUTHX_FUZZTIME:-10s}
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
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	done
	echo "fuzzed ${#targets[@]} targets for $fuzztime each"
)
