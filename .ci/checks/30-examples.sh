# shellcheck shell=bash
# The example modules: each examples/*/ with a go.mod is a module of its
# own (so that what it needs, such as the OpenTelemetry SDK and the
# Prometheus client of examples/prometheus, stays out of mpauthx's
# go.mod), which the root's go vet, go test ./... and staticcheck do not
# reach. Here each gets go vet, its tests with -race, staticcheck and, with
# a real Redis, one smoke run of its benchmarks. Any failure fails CI.
#
# Sourced by .ci/run (under set -euo pipefail) from the repository root;
# it also runs on its own: bash .ci/checks/30-examples.sh.
(
	set -euo pipefail
	cd "$(dirname "${BASH_SOURCE[0]}")/../.."
	for mod in examples/*/go.mod; do
		[[ -e "$mod" ]] || continue
		dir=$(dirname "$mod")
		echo "--- $dir: go vet, go test -race, staticcheck"
		(
			cd "$dir"
			go vet ./...
			go test -race -count=1 -timeout 10m ./...
			go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
			if [[ -n ${MPAUTHX_REDIS_ADDR:-} ]]; then
				echo "--- $dir: benchmarks, 100 iterations each (MPAUTHX_REDIS_ADDR=$MPAUTHX_REDIS_ADDR)"
				go test -run '^$' -bench . -benchtime 100x -benchmem ./...
			fi
		)
	done
)
