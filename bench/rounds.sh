#!/usr/bin/env bash
# Runs ROUNDS rounds of every figure in docs/performance.md, one command
# after the other, against the throwaway Redis at 127.0.0.1:PORT, so that
# all of them are measured in the same minutes:
#
#   bash bench/rounds.sh PORT [ROUNDS]     (default 3)
#
# Each round: redis-benchmark GET -P 16 and unpipelined, mpauthx-bench with
# -prefill 0 and 200000 (its fake WeChat in a child process, as the Node
# harness below runs it), and with -prefill 0 -local-cache 10000
# (Config.LocalCache, docs/localcache.md), then bench/ioredis/check.js
# (without and with autopipelining). Right after each of the first two,
# bench/node-login/login.js (the Node original's login against
# mpauthx-bench's fake WeChat) with the same -prefill, and with -prefill 0
# -sqlite wal, each followed by the ratio of mpauthx-bench's logins/s to
# the Node original's (with 200000 tokens, the original's login scans
# them all: that run takes minutes). Needs
# redis-benchmark, Go, and Node.js with npm (and a C++ compiler: npm builds
# the sqlite3 package from source). The GETs of redis-benchmark are of a
# key that does not exist (nil replies).
set -euo pipefail
port=${1:?usage: bash bench/rounds.sh PORT [ROUNDS]}
rounds=${2:-3}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/mpauthx-bench" ./cmd/mpauthx-bench
(cd bench/ioredis && npm ci --silent --no-audit --no-fund)
# sqlite3 compiles for minutes: keep a build that is there.
[[ -e bench/node-login/node_modules/sqlite3/build/Release/node_sqlite3.node ]] ||
	(cd bench/node-login && npm_config_build_from_source=true npm ci --silent --no-audit --no-fund)
logins() { # prints the logins/s of a JSON line of mpauthx-bench or login.js
	grep -o '"logins":{[^}]*}' <<<"$1" | grep -o '"per_sec":[0-9.]*' | cut -d: -f2
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }
rb() { # prints redis-benchmark's requests per second; fails if it printed none
	local out
	out=$(redis-benchmark -p "$port" -t get -c 64 -q "$@" | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -n 1)
	[[ -n $out ]] || { echo "redis-benchmark on port $port printed no result" >&2; return 1; }
	echo "$out"
}
for ((r = 1; r <= rounds; r++)); do
	echo "## round $r"
	out=$(rb -n 1000000 -P 16) || exit 1
	echo "redis-benchmark -P 16: $out"
	out=$(rb -n 300000) || exit 1
	echo "redis-benchmark:       $out"
	for prefill in 0 200000; do
		# mpauthx-bench and login.js exit 1 on any failure or wrong answer.
		out=$("$bin/mpauthx-bench" -redis "127.0.0.1:$port" -users 2000 -prefill "$prefill" -concurrency 64 -seconds 5 -fake-process) || exit 1
		echo "mpauthx-bench -prefill $prefill: $out"
		goLogins=$(logins "$out")
		# The Node original's logins, right after: as its users opened
		# SQLite, and (without prefill) with mpauthx.OpenSQLite's settings.
		sqlites=(default wal)
		((prefill == 0)) || sqlites=(default)
		for sqlite in "${sqlites[@]}"; do
			out=$(cd bench/node-login && node login.js -fake "$bin/mpauthx-bench" -redis "127.0.0.1:$port" -users 2000 -prefill "$prefill" -concurrency 64 -sqlite "$sqlite") || exit 1
			echo "node-login -prefill $prefill -sqlite $sqlite: $out"
			echo "ratio, logins/s: mpauthx-bench -prefill $prefill / node-login -prefill $prefill -sqlite $sqlite: $(ratio "$goLogins" "$(logins "$out")")"
		done
	done
	out=$("$bin/mpauthx-bench" -redis "127.0.0.1:$port" -users 2000 -prefill 0 -concurrency 64 -seconds 5 -local-cache 10000) || exit 1
	echo "mpauthx-bench -prefill 0 -local-cache 10000: $out"
	(cd bench/ioredis && node check.js -redis "127.0.0.1:$port" -seconds 5)
done
