#!/usr/bin/env bash
# Local PostgreSQL for development and tests (Debian's server binaries, no system cluster).
#   scripts/pg.sh up     initdb (once), start, wait until it answers, create the database if missing
#   scripts/pg.sh down   stop it (pg_ctl stop -m fast)
#   scripts/pg.sh status exit 0 when a server answers on 127.0.0.1:PG_PORT
# Idempotent: `up` on a running server returns at once. It listens on 127.0.0.1 only; the
# superuser role `clickstream` (the cluster's bootstrap user) and the database `clickstream`
# need no password there (trust on loopback and the unix socket, nothing else in pg_hba).
# Data, logs and the unix socket live under .local/postgres/ (git-ignored):
#   data-PORT/  the cluster   log/postgres-PORT.log  its log   run/  the unix socket
# PG_PORT (default 15432) and PG_HOME (default .local/postgres) let tests run a second server
# beside it. PG_BINDIR picks the server binaries; default: the newest major version installed
# under /usr/lib/postgresql (or the one that made an existing data directory).
# PostgreSQL refuses to run as root: as root, the server runs as the system user PG_OS_USER
# (default clickstream-pg, created when missing, no home, no shell), which owns data-PORT, log/
# and run/ and must be able to reach PG_HOME. Nothing else changes mode or owner: when a parent
# directory is private (a clone under /root, say), `up` stops with one line saying so; point
# PG_HOME somewhere reachable (e.g. /var/tmp/clickstream-pg) then.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=${PG_PORT:-15432}
home=$(realpath -m "${PG_HOME:-$root/.local/postgres}")
data=$home/data-$port
logdir=$home/log
logfile=$logdir/postgres-$port.log
rundir=$home/run
role=clickstream
database=clickstream
os_user=${PG_OS_USER:-clickstream-pg}

die() { echo "pg: $*" >&2; exit 1; }

case "$port" in ''|*[!0-9]*) die "PG_PORT='$port' is not a port number" ;; esac

is_root() { [ "$(id -u)" = 0 ]; }

# Run a server-side program (initdb, pg_ctl) as the user the server runs as, from / so that a
# private working directory does not matter.
as_server() {
  if is_root; then (cd / && runuser -u "$os_user" -- "$@"); else "$@"; fi
}

# The server binaries: PG_BINDIR, else the version that made the data directory, else the newest.
find_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then
    [ -x "$PG_BINDIR/postgres" ] || die "PG_BINDIR=$PG_BINDIR holds no postgres server binary"
    bindir=$PG_BINDIR
    return
  fi
  if [ -f "$data/PG_VERSION" ]; then
    local made; made=$(cat "$data/PG_VERSION")
    [ -x "/usr/lib/postgresql/$made/bin/postgres" ] \
      || die "$data was made by PostgreSQL $made, which is not installed (apt-get install postgresql-$made, or remove $data)"
    bindir=/usr/lib/postgresql/$made/bin
    return
  fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$newest" ] || die "no PostgreSQL server under /usr/lib/postgresql (install Debian's postgresql package)"
  bindir=$(dirname "$newest")
}

# (as the role clickstream: a ping as a role that does not exist is logged as an error)
answers() {
  "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$role" -d postgres -t 2 >/dev/null 2>&1
}

# State of the process that postmaster.pid names ("" when there is none, Z for a zombie).
recorded_state() {
  local pid
  pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || return 0
  [ -n "$pid" ] && sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d ' ' -f 1 || true
}

# A postmaster killed hard stays a zombie until init reaps it (seconds, in some containers), and
# PostgreSQL takes the pid file of a pid that exists as a running server: wait that out.
wait_for_reaping() {
  for _ in $(seq 1 100); do [ "$(recorded_state)" = Z ] || return 0; sleep 0.2; done
}

# Our own server (the one of this data directory) is running.
ours_running() {
  [ -f "$data/postmaster.pid" ] || return 1
  case "$(recorded_state)" in ''|Z) return 1 ;; esac
  as_server "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1
}

ensure_os_user() {
  is_root || return 0
  if ! id -u "$os_user" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$os_user" 2>/dev/null \
      || id -u "$os_user" >/dev/null 2>&1 \
      || die "cannot create the system user $os_user to run PostgreSQL as (it refuses to run as root)"
  fi
}

# As root: the server's user must reach PG_HOME; name the first directory on the way it cannot.
check_reachable() {
  is_root || return 0
  as_server test -x "$home" && return 0
  local dir=$home
  # walk up to the outermost directory it cannot enter
  while [ "$dir" != / ] && ! as_server test -x "$(dirname "$dir")"; do dir=$(dirname "$dir"); done
  die "the server runs as $os_user (PostgreSQL refuses root), which cannot enter $dir ($(stat -c '%A %U' "$dir")); set PG_HOME to a directory it can reach, e.g. PG_HOME=/var/tmp/clickstream-pg"
}

# Directories the server writes, owned by the user it runs as (as root: that system user).
make_dirs() {
  (umask 022 && mkdir -p "$home")
  check_reachable
  mkdir -p "$logdir" "$rundir" "$data"
  touch "$logfile"
  chmod 700 "$data"
  if is_root; then
    local d owner
    for d in "$data" "$logdir" "$rundir"; do
      owner=$(stat -c %U "$d")
      if [ "$owner" != "$os_user" ]; then
        if [ "$d" = "$data" ] && [ -f "$data/PG_VERSION" ]; then
          die "$data belongs to $owner, not to $os_user that runs the server; remove it or set PG_OS_USER=$owner"
        fi
        chown "$os_user:" "$d"
      fi
    done
    chown "$os_user:" "$logfile"
  fi
}

# Settings rewritten at each start (port and paths may change), included by postgresql.conf.
write_config() {
  local socket_dirs=$rundir
  # a unix socket path is limited to 107 bytes: in a deep PG_HOME, TCP only
  [ ${#rundir} -le 80 ] || socket_dirs=""
  cat > "$data/clickstream.conf" <<CONF
# written by scripts/pg.sh at each start
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$socket_dirs'
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
CONF
  if is_root; then chown "$os_user:" "$data/clickstream.conf"; fi
  grep -q "^include_if_exists = 'clickstream.conf'" "$data/postgresql.conf" \
    || echo "include_if_exists = 'clickstream.conf'" >> "$data/postgresql.conf"
}

init_cluster() {
  [ -f "$data/PG_VERSION" ] && return 0
  echo "pg: initdb $data (first run only)" >&2
  if ! as_server "$bindir/initdb" -D "$data" --username="$role" --auth=trust \
      --encoding=UTF8 --locale=C >>"$logfile" 2>&1; then
    echo "pg: initdb failed; last log lines:" >&2
    tail -n 20 "$logfile" >&2
    exit 1
  fi
}

sql() {
  PGCONNECT_TIMEOUT=5 "$bindir/psql" -X -q -t -A -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$port" -U "$role" -d postgres -c "$1"
}

ensure_database() {
  if [ "$(sql "SELECT 1 FROM pg_database WHERE datname = '$database'")" != 1 ]; then
    # a concurrent `up` may have made it in between: only a second look decides
    sql "CREATE DATABASE $database" >/dev/null 2>&1 \
      || [ "$(sql "SELECT 1 FROM pg_database WHERE datname = '$database'")" = 1 ] \
      || die "cannot create the database $database (see $logfile)"
  fi
}

up() {
  find_bindir
  if answers; then
    ensure_os_user
    if ours_running; then
      ensure_database
      echo "pg: already running on 127.0.0.1:$port"
      return 0
    fi
    echo "pg: something else answers on 127.0.0.1:$port; using it"
    return 0
  fi
  ensure_os_user
  make_dirs
  init_cluster
  write_config
  wait_for_reaping
  # -w: wait until the server is ready; fd 9 (our lock) must not stay open in the server
  if ! as_server "$bindir/pg_ctl" start -D "$data" -l "$logfile" -w -t 60 >/dev/null 2>&1 9>&-; then
    echo "pg: the server did not start on 127.0.0.1:$port; last log lines:" >&2
    tail -n 20 "$logfile" >&2
    return 1
  fi
  for _ in $(seq 1 60); do answers && break; sleep 0.5; done
  answers || die "no answer on 127.0.0.1:$port after 30 s (see $logfile)"
  ensure_database
  local version pid
  version=$("$bindir/postgres" --version | awk '{print $3}')
  pid=$(head -n 1 "$data/postmaster.pid")
  echo "pg: up on 127.0.0.1:$port (PostgreSQL $version, pid $pid, data $data, log $logfile)"
}

down() {
  if [ ! -f "$data/postmaster.pid" ]; then echo "pg: not running"; return 0; fi
  find_bindir
  ensure_os_user
  if ! ours_running; then echo "pg: not running"; return 0; fi
  as_server "$bindir/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null
  echo "pg: stopped"
}

lock() {
  (umask 022 && mkdir -p "$home")
  exec 9>"$home/.lock-$port"
  flock 9
}

case "${1:-}" in
  up) lock; up ;;
  down) lock; down ;;
  status) find_bindir; answers ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
