# shellcheck shell=bash
# Sourced by .ci/run: starts a Redis primary, one replica and three
# redis-sentinel processes watching them as "mymaster" (quorum 2), all on
# free loopback ports without persistence, and exports
#
#   MPAUTHX_SENTINEL=mymaster@<sentinel>,<sentinel>,<sentinel>
#
# so that the suite's Sentinel tests (sentinel_test.go) run against a
# go-redis failover client and fail the set over for real. Uses work, pids,
# free_port and wait_redis from .ci/run; every server it starts is
# appended to pids, so .ci/run's cleanup stops it. The ports start at
# MPAUTHX_SENTINEL_BASE_PORT (default 22379).
#
# A replica (re)syncs at once (repl-diskless-sync-delay 0, not the default
# 5 s wait for more replicas), so that the set is whole again soon after
# a failover. A failover is detected within down-after-milliseconds (1 s) and may be
# retried after twice failover-timeout (2 x 5 s): short, so that the tests
# that kill the primary heal within seconds.

sentinel_next=${MPAUTHX_SENTINEL_BASE_PORT:-22379}
sentinel_master=mymaster

# sentinel_port prints the next free port from sentinel_next.
sentinel_port() {
	local p
	p=$(free_port "$sentinel_next")
	sentinel_next=$((p + 1))
	echo "$p"
}

# sentinel_redis starts a redis-server on port $1 with the extra arguments
# that follow, and waits until it answers PING.
sentinel_redis() {
	local p=$1 dir="$work/sentinel-redis-$1"
	shift
	mkdir -p "$dir"
	redis-server --bind 127.0.0.1 --port "$p" --save "" --appendonly no \
		--repl-diskless-sync-delay 0 --dir "$dir" --logfile "$dir/redis.log" "$@" &
	pids+=($!)
	wait_redis "$p" || { tail -n 5 "$dir/redis.log" >&2; return 1; }
}

sentinel_fail() {
	echo "redis sentinel: $*" >&2
	return 1 2>/dev/null || exit 1
}

sentinel_primary=$(sentinel_port)
sentinel_redis "$sentinel_primary" || sentinel_fail "the primary did not start"
sentinel_replica=$(sentinel_port)
sentinel_redis "$sentinel_replica" --replicaof 127.0.0.1 "$sentinel_primary" ||
	sentinel_fail "the replica did not start"

# The replica must have synced before the Sentinels see it, or the first
# tests would find no replica to fail over to.
sentinel_ok=0
for _ in $(seq 200); do
	if redis-cli -p "$sentinel_replica" info replication 2>/dev/null | grep -q 'master_link_status:up'; then
		sentinel_ok=1
		break
	fi
	sleep 0.1
done
((sentinel_ok)) || sentinel_fail "the replica on port $sentinel_replica did not sync within 20 s"

# redis-sentinel is its own Debian package; redis-server --sentinel is the
# same program.
if command -v redis-sentinel >/dev/null; then
	sentinel_cmd=(redis-sentinel)
else
	sentinel_cmd=(redis-server)
fi
sentinel_addrs=()
for _ in 1 2 3; do
	p=$(sentinel_port)
	dir="$work/sentinel-$p"
	mkdir -p "$dir"
	# Sentinel rewrites its configuration file: it must be writable.
	cat >"$dir/sentinel.conf" <<EOF
bind 127.0.0.1
port $p
dir $dir
logfile $dir/sentinel.log
sentinel monitor $sentinel_master 127.0.0.1 $sentinel_primary 2
sentinel down-after-milliseconds $sentinel_master 1000
sentinel failover-timeout $sentinel_master 5000
sentinel parallel-syncs $sentinel_master 1
EOF
	if [[ ${sentinel_cmd[0]} == redis-server ]]; then
		redis-server "$dir/sentinel.conf" --sentinel &
	else
		redis-sentinel "$dir/sentinel.conf" &
	fi
	pids+=($!)
	wait_redis "$p" || { tail -n 5 "$dir/sentinel.log" >&2; sentinel_fail "a sentinel did not start on port $p"; }
	sentinel_addrs+=("127.0.0.1:$p")
done

# Every Sentinel must know the primary, its replica and the other
# Sentinels before the tests start.
sentinel_ok=0
for _ in $(seq 300); do
	sentinel_ok=1
	for a in "${sentinel_addrs[@]}"; do
		sentinel_info=$(redis-cli -p "${a##*:}" sentinel master "$sentinel_master" 2>/dev/null | tr '\n' ' ' || true)
		[[ $sentinel_info == *" num-slaves 1 "* && $sentinel_info == *" num-other-sentinels 2 "* ]] || sentinel_ok=0
	done
	((sentinel_ok)) && break
	sleep 0.1
done
if ! ((sentinel_ok)); then
	for a in "${sentinel_addrs[@]}"; do
		echo "--- $a sentinel master $sentinel_master" >&2
		redis-cli -p "${a##*:}" sentinel master "$sentinel_master" >&2 || true
	done
	sentinel_fail "the sentinels did not see the replica and each other within 30 s"
fi

MPAUTHX_SENTINEL="$sentinel_master@$(IFS=,; echo "${sentinel_addrs[*]}")"
export MPAUTHX_SENTINEL
echo "redis sentinel: ok, primary 127.0.0.1:$sentinel_primary, replica 127.0.0.1:$sentinel_replica, MPAUTHX_SENTINEL=$MPAUTHX_SENTINEL"
unset -f sentinel_port sentinel_redis sentinel_fail
unset sentinel_next sentinel_master sentinel_primary sentinel_replica sentinel_ok sentinel_cmd sentinel_addrs sentinel_info p dir a
