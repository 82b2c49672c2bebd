# shellcheck shell=bash
# Sourced by .ci/run: starts a throwaway PostgreSQL on a free loopback port
# and exports MPAUTHX_POSTGRES_DSN for the tests. Uses work, pids and
# free_port from .ci/run.
#
# The cluster lives in $work/postgres, owned by the postgres system user
# (PostgreSQL refuses to run as root), trusts connections from 127.0.0.1
# only, and is tuned for tests (no fsync). The server is stopped with a
# fast shutdown when .ci/run's cleanup sends SIGTERM to the stopper process
# appended to pids: SIGTERM to the postmaster itself would be a smart
# shutdown, which waits for every client to disconnect.

# pg_bindir prints the directory holding a working initdb and pg_ctl.
pg_bindir() {
	local d
	if command -v pg_ctl >/dev/null && command -v initdb >/dev/null &&
		pg_ctl --version >/dev/null 2>&1 && initdb --version >/dev/null 2>&1; then
		dirname "$(readlink -f "$(command -v pg_ctl)")"
		return 0
	fi
	# Debian keeps the server binaries off PATH; take the newest version.
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if "$d/pg_ctl" --version >/dev/null 2>&1 && "$d/initdb" --version >/dev/null 2>&1; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

if ! pg_bin=$(pg_bindir); then
	log "apt-get install postgresql"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# postgresql-common first, told not to create (and start) the system's
	# "main" cluster on port 5432 when the server package is installed: CI
	# needs only its throwaway cluster.
	apt-get install -y -qq postgresql-common >/dev/null
	sed -ri 's/^#?(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf
	apt-get install -y -qq postgresql >/dev/null
	pg_bin=$(pg_bindir) || { echo "postgresql installed but no working pg_ctl/initdb found" >&2; exit 1; }
fi

# as_pg runs a command as the owner of the cluster.
pg_user=$(id -un)
if [[ $(id -u) == 0 ]]; then
	pg_user=postgres
	id -u "$pg_user" >/dev/null 2>&1 ||
		useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$pg_user"
	chmod a+x "$work" # let the postgres user reach its directory; nothing is listable
fi
as_pg() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u "$pg_user" -- "$@"
	else
		"$@"
	fi
}

pg_dir="$work/postgres"
mkdir -p "$pg_dir"
chown "$pg_user" "$pg_dir"
chmod 700 "$pg_dir"
as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1 ||
	as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$pg_dir/initdb.log" 2>&1 ||
	{ cat "$pg_dir/initdb.log" >&2; exit 1; }

pg_port=$(free_port 25432)
log "postgres ($("$pg_bin/postgres" --version)) on 127.0.0.1:$pg_port"
as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 start -o \
	"-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories='' -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
	>/dev/null || { cat "$pg_dir/server.log" >&2; exit 1; }

# The stopper: waits for cleanup's SIGTERM (sent on any exit of .ci/run,
# Ctrl-C included), then stops the server with a fast shutdown (clients are
# disconnected), falling back to an immediate one.
(
	stop_pg() {
		as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
		kill "$sleeper" 2>/dev/null || true
		exit 0
	}
	trap stop_pg TERM HUP
	sleep infinity &
	sleeper=$!
	wait "$sleeper" || true
	stop_pg
) &
pids+=($!)

"$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qc 'CREATE DATABASE mpauthx' >/dev/null
export MPAUTHX_POSTGRES_DSN="postgres://postgres@127.0.0.1:$pg_port/mpauthx?sslmode=disable"
