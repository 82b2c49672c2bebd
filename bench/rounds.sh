#!/usr/bin/env bash
# Runs ROUNDS rounds of every figure in README "Performance", one command
# after the other, against the throwaway Redis at 127.0.0.1:PORT, so that
# all of them are measured in the same minutes:
#
#   bash bench/rounds.sh PORT [ROUNDS]     (default 3)
#
# Each round: redis-benchmark GET -P 16 and unpipelined, mpauthx-bench with
# -prefill 0 and 200000, and with -prefill 0 -local-cache 10000
# (Config.LocalCache, docs/localcache.md), then bench/ioredis/check.js
# (without and with autopipelining). Needs redis-benchmark, Go, and Node.js with npm. The
# GETs of redis-benchmark are of a key that does not exist (nil replies).
set -euo pipefail
port=${1:?usage: bash bench/rounds.sh PORT [ROUNDS]}
rounds=${2:-3}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/mpauthx-bench" ./cmd/mpauthx-bench
(cd bench/ioredis && npm ci --silent --no-audit --no-fund)
rb() { # prints redis-benchmark's requests per second; fails if it printed none
	local out
	out=$(redis-benchmark -p "$port" -t get -c 64 -q "$@" | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -n 1)
	[[ -n $out ]] || { echo "redis-benchmark on port $port printed no result" >&2; return 1; }
	echo "$out"
}
for ((r = 1; r <= rounds; r++)); do
	echo "## round $r $(date -u +%H:%M:%S) UTC"
	out=$(rb -n 1000000 -P 16) || exit 1
	echo "redis-benchmark -P 16: $out"
	out=$(rb -n 300000) || exit 1
	echo "redis-benchmark:       $out"
	for prefill in 0 200000; do
		# mpauthx-bench exits 1 on any failure or wrong answer.
		out=$("$bin/mpauthx-bench" -redis "127.0.0.1:$port" -users 2000 -prefill "$prefill" -concurrency 64 -seconds 5) || exit 1
		echo "mpauthx-bench -prefill $prefill: $out"
	done
	out=$("$bin/mpauthx-bench" -redis "127.0.0.1:$port" -users 2000 -prefill 0 -concurrency 64 -seconds 5 -local-cache 10000) || exit 1
	echo "mpauthx-bench -prefill 0 -local-cache 10000: $out"
	(cd bench/ioredis && node check.js -redis "127.0.0.1:$port" -seconds 5)
done
