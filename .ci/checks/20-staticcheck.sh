# shellcheck shell=bash
# staticcheck (honnef.co/go/tools) over the whole module, at a pinned
# version so that CI does not change under us. Any finding fails CI.
#
# Sourced by .ci/run (under set -euo pipefail) from the repository root;
# it also runs on its own: bash .ci/checks/20-staticcheck.sh.
(
	set -euo pipefail
	cd "$(dirname "${BASH_SOURCE[0]}")/../.."
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
)
