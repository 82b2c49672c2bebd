# Benchmark smoke run (sourced by .ci/run, with set -euo pipefail and
# MPAUTHX_REDIS_ADDR exported). It does not measure anything: it checks that
# the benchmarks and cmd/mpauthx-bench still run, get right answers, and
# leave no key behind in the shared Redis. About 30 s.

bench_redis=${MPAUTHX_REDIS_ADDR:?MPAUTHX_REDIS_ADDR must be set by .ci/run}
bench_host=${bench_redis%:*}
bench_port=${bench_redis##*:}

# bench_keys prints how many keys of the benchmarks' made-up Skus and
# baseline users are in Redis.
bench_keys() {
	{
		redis-cli -h "$bench_host" -p "$bench_port" --scan --pattern 'mpauthx:{*|bench-*}:session'
		redis-cli -h "$bench_host" -p "$bench_port" --scan --pattern 'mpauthx:{bench-baseline-*}:session'
	} | wc -l
}

bench_before=$(bench_keys)

# Every benchmark, 100 iterations each: a benchmark that fails (a wrong
# answer is a b.Error) fails the check.
log "go test -run '^\$' -bench . -benchtime 100x -benchmem ./...  (MPAUTHX_REDIS_ADDR=$bench_redis)"
go test -run '^$' -bench . -benchtime 100x -benchmem ./...

# The comparison with verifying a JWT (bench/jwt, a module of its own so
# that the JWT library stays out of mpauthx's go.mod), 100 iterations each.
log "(cd bench/jwt && go test -run '^\$' -bench . -benchtime 100x -benchmem)  (MPAUTHX_REDIS_ADDR=$bench_redis)"
(cd bench/jwt && go vet . && go test -run '^$' -bench . -benchtime 100x -benchmem)

# The benchmark command on a small workload, without and with the local
# cache: it exits 1 on a failure or a wrong answer; the JSON must say so
# too.
# On the Redis Cluster too (-cluster), when .ci/run started one.
bench_targets=("-redis $bench_redis -local-cache 0" "-redis $bench_redis -local-cache 10000")
[[ -n ${MPAUTHX_REDIS_CLUSTER:-} ]] && bench_targets+=("-cluster $MPAUTHX_REDIS_CLUSTER -local-cache 0")
for bench_target in "${bench_targets[@]}"; do
	log "go run ./cmd/mpauthx-bench $bench_target -users 200 -prefill 1000 -concurrency 64 -seconds 1"
	# shellcheck disable=SC2086 # bench_target is flags, split on purpose
	if ! bench_json=$(go run ./cmd/mpauthx-bench $bench_target -users 200 -prefill 1000 -concurrency 64 -seconds 1); then
		echo "mpauthx-bench failed: $bench_json" >&2
		exit 1
	fi
	echo "$bench_json"
	# Three phases (logins, checks, rechecks), each with "failures":0 and
	# "wrong":0, and "keys_left":0.
	if [[ $(grep -o '"failures":0,' <<<"$bench_json" | wc -l) -ne 3 ||
		$(grep -o '"wrong":0}' <<<"$bench_json" | wc -l) -ne 3 ||
		$bench_json != *'"keys_left":0}'* || $bench_json != *'"real_redis":true,'* ]]; then
		echo "mpauthx-bench reported failures, wrong answers or keys left" >&2
		exit 1
	fi
done

bench_after=$(bench_keys)
if ((bench_after > bench_before)); then
	echo "the benchmarks left $((bench_after - bench_before)) keys in Redis" >&2
	exit 1
fi
unset bench_redis bench_host bench_port bench_before bench_after bench_json bench_target bench_targets
unset -f bench_keys
