# shellcheck shell=bash
# Sourced by .ci/run: starts a three-master Redis Cluster on loopback (no
# replicas, no persistence) and exports MPAUTHX_REDIS_CLUSTER with its seed
# addresses, so that the suite's Redis tests also run against a
# *redis.ClusterClient. Uses work, pids and free_port from .ci/run; every
# server it starts is appended to pids, so .ci/run's cleanup stops it.
#
# A cluster node also listens on its bus port, port+10000. The ports start
# at 21000 so that the bus ports (31000+) stay below Linux's ephemeral
# range (32768+), where the suite's own outgoing connections could take
# them first.

cluster_ports=()
cluster_next=${MPAUTHX_CLUSTER_BASE_PORT:-21000}

# cluster_node starts one cluster node on the first port from $cluster_next
# whose bus port is free too, waits until it answers PING and records it in
# cluster_ports. A node that dies at start (a port taken in between) is
# retried on the next port.
cluster_node() {
	local p pid dir
	for _ in 1 2 3 4 5; do
		p=$(free_port "$cluster_next")
		cluster_next=$((p + 1))
		[[ $(free_port $((p + 10000))) == $((p + 10000)) ]] || continue
		dir="$work/cluster-$p"
		mkdir -p "$dir"
		redis-server --bind 127.0.0.1 --port "$p" \
			--cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
			--cluster-node-timeout 5000 --save "" --appendonly no \
			--dir "$dir" --logfile "$dir/redis.log" &
		pid=$!
		pids+=("$pid")
		for _ in $(seq 100); do
			if [[ $(redis-cli -p "$p" ping 2>/dev/null || true) == PONG ]]; then
				cluster_ports+=("$p")
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break # it died: try the next port
			sleep 0.1
		done
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		unset 'pids[-1]' # gone: cleanup must not kill whoever reuses its pid
		echo "redis cluster: node on port $p did not start:" >&2
		tail -n 5 "$dir/redis.log" >&2 || true
	done
	echo "redis cluster: could not start a node" >&2
	return 1
}

for _ in 1 2 3; do
	cluster_node || { return 1 2>/dev/null || exit 1; }
done

cluster_addrs=()
for p in "${cluster_ports[@]}"; do cluster_addrs+=("127.0.0.1:$p"); done
echo "redis cluster: creating with ${cluster_addrs[*]}"
if ! redis-cli --cluster create "${cluster_addrs[@]}" --cluster-replicas 0 --cluster-yes \
	>"$work/cluster-create.log" 2>&1; then
	cat "$work/cluster-create.log" >&2
	echo "redis cluster: redis-cli --cluster create failed" >&2
	return 1 2>/dev/null || exit 1
fi

# Every node must see the whole cluster before the tests start: a client
# that seeds from a node still gossiping would get CLUSTERDOWN.
cluster_ok=0
for _ in $(seq 200); do
	cluster_ok=1
	for p in "${cluster_ports[@]}"; do
		cluster_info=$(redis-cli -p "$p" cluster info 2>/dev/null || true)
		[[ $cluster_info == *cluster_state:ok* ]] || cluster_ok=0
	done
	((cluster_ok)) && break
	sleep 0.1
done
if ! ((cluster_ok)); then
	for p in "${cluster_ports[@]}"; do
		echo "--- 127.0.0.1:$p cluster info" >&2
		redis-cli -p "$p" cluster info >&2 || true
	done
	echo "redis cluster: cluster_state did not become ok within 20 s" >&2
	return 1 2>/dev/null || exit 1
fi

MPAUTHX_REDIS_CLUSTER=$(IFS=,; echo "${cluster_addrs[*]}")
export MPAUTHX_REDIS_CLUSTER
echo "redis cluster: ok, MPAUTHX_REDIS_CLUSTER=$MPAUTHX_REDIS_CLUSTER"
unset -f cluster_node
unset cluster_ports cluster_next cluster_addrs cluster_ok cluster_info
