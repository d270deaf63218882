#!/usr/bin/env bash
# SC2034: the SF_* result globals are read by the sourcing scripts.
# SC2016: the single-quoted `bash -c` bodies expand their own $1, $2...
# shellcheck disable=SC2034,SC2016
#
# Shared helpers for the ops scripts. Source it, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# The private servers started here live entirely under a directory of the
# repository (default .data/), listen on 127.0.0.1 only and never touch the
# distribution's system services, so a newcomer can run the service without
# configuring anything and without disturbing servers already on the machine.
set -euo pipefail

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "ops/lib.sh is a library; source it from another script." >&2
  exit 2
fi

# Resolved once, from this file's location, so the helpers work from any cwd.
SF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

# Servers started by this shell, as "name|pidfile|pid", stopped by sf_stop_private.
SF_STARTED=()
# Set while a temporary policy-rc.d is in place, so a trap can remove it.
SF_POLICY_RC_BACKUP=""
SF_POLICY_RC_INSTALLED=0

# Port and URL of the last sf_start_private_* call (the port may differ from
# the requested one when an already running server of ours is reused). The
# start functions report through these globals rather than stdout because
# they must run in the calling shell, not in a $(...) subshell, for
# sf_stop_private to know what to stop.
SF_MARIADB_PORT_USED=""
SF_MARIADB_URL=""
SF_REDIS_PORT_USED=""
SF_REDIS_URL=""

sf_log() { printf '==> %s\n' "$*" >&2; }
sf_warn() { printf 'warning: %s\n' "$*" >&2; }
sf_die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

sf_root() { printf '%s\n' "$SF_ROOT"; }

sf_data_dir() { printf '%s\n' "${SF_DATA_DIR:-$SF_ROOT/.data}"; }

# ---------------------------------------------------------------------------
# Binaries and packages
# ---------------------------------------------------------------------------

# Prints the path of a program, also looking in the sbin directories that are
# not on a normal user's PATH (Debian installs mariadbd in /usr/sbin).
sf_find_bin() {
  local name=$1 dir
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return 0
  fi
  for dir in /usr/sbin /usr/local/sbin /sbin /usr/bin /usr/local/bin; do
    if [[ -x "$dir/$name" ]]; then
      printf '%s\n' "$dir/$name"
      return 0
    fi
  done
  return 1
}

# Exports MARIADBD_BIN, MARIADB_INSTALL_DB_BIN, REDIS_SERVER_BIN (and the
# clients MARIADB_BIN, REDIS_CLI_BIN) for whatever is installed; values
# already set by the caller win, and programs not found are left unset so
# tests can tell "missing" from "here".
# Tests that start their own servers read these variables.
sf_resolve_bins() {
  local var prog path
  for var in MARIADBD_BIN:mariadbd MARIADB_INSTALL_DB_BIN:mariadb-install-db \
    MARIADB_INSTALL_DB_BIN:mysql_install_db MARIADB_BIN:mariadb MARIADB_BIN:mysql \
    REDIS_SERVER_BIN:redis-server REDIS_CLI_BIN:redis-cli; do
    prog=${var#*:}
    var=${var%%:*}
    [[ -n ${!var:-} ]] && continue
    if path=$(sf_find_bin "$prog"); then
      printf -v "$var" '%s' "$path"
      export "${var?}"
    fi
  done
  return 0
}

# Runs a command as root, through sudo when the caller is not root.
sf_as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    sf_die "need root to run '$*' and sudo is not installed"
  fi
}

# Removes the temporary policy-rc.d installed by sf_ensure_packages (and puts
# back one that existed before). Safe to call from traps at any time.
sf_restore_policy_rc() {
  [[ $SF_POLICY_RC_INSTALLED -eq 1 ]] || return 0
  if [[ -n $SF_POLICY_RC_BACKUP ]]; then
    sf_as_root mv -f "$SF_POLICY_RC_BACKUP" /usr/sbin/policy-rc.d || true
  else
    sf_as_root rm -f /usr/sbin/policy-rc.d || true
  fi
  SF_POLICY_RC_INSTALLED=0
  SF_POLICY_RC_BACKUP=""
}

# Keeps package installs from starting their services (a temporary policy-rc.d,
# the machine's own saved and put back by sf_restore_policy_rc). Idempotent.
sf_hold_service_starts() {
  [[ ${SF_POLICY_RC_INSTALLED:-0} -eq 1 ]] && return 0
  if sf_as_root test -e /usr/sbin/policy-rc.d; then
    SF_POLICY_RC_BACKUP="/usr/sbin/policy-rc.d.stock-flow-backup.$$"
    sf_as_root cp -p /usr/sbin/policy-rc.d "$SF_POLICY_RC_BACKUP"
  fi
  SF_POLICY_RC_INSTALLED=1
  printf '#!/bin/sh\n# Temporary: keep package installs from starting services.\nexit 101\n' |
    sf_as_root tee /usr/sbin/policy-rc.d >/dev/null
  sf_as_root chmod 0755 /usr/sbin/policy-rc.d
}

# Installs MariaDB and Redis from the distribution when they are missing.
# The packages' system services must not start: the private servers need
# nothing from them, and ports 3306/6379 may belong to someone else. A
# policy-rc.d that exits 101 ("action forbidden") makes invoke-rc.d and
# deb-systemd-invoke skip starting them during the installation.
sf_ensure_packages() {
  local missing=()
  sf_find_bin mariadbd >/dev/null || missing+=(mariadbd)
  sf_find_bin mariadb-install-db >/dev/null || missing+=(mariadb-install-db)
  sf_find_bin mariadb >/dev/null || missing+=(mariadb)
  sf_find_bin redis-server >/dev/null || missing+=(redis-server)
  sf_find_bin redis-cli >/dev/null || missing+=(redis-cli)
  if [[ ${#missing[@]} -eq 0 ]]; then
    sf_resolve_bins
    return 0
  fi
  if [[ ${SF_NO_INSTALL:-0} == 1 ]]; then
    sf_die "missing ${missing[*]} and SF_NO_INSTALL=1; install mariadb-server, mariadb-client, redis-server and redis-tools"
  fi
  command -v apt-get >/dev/null 2>&1 ||
    sf_die "missing ${missing[*]}; install MariaDB and Redis with your package manager (apt-get not found)"

  sf_log "installing MariaDB and Redis packages (missing: ${missing[*]})"
  sf_hold_service_starts

  local rc=0
  sf_as_root env DEBIAN_FRONTEND=noninteractive apt-get update || rc=$?
  if [[ $rc -eq 0 ]]; then
    sf_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      mariadb-server mariadb-client redis-server redis-tools || rc=$?
  fi
  sf_restore_policy_rc
  [[ $rc -eq 0 ]] || sf_die "package installation failed (exit $rc)"
  sf_resolve_bins
  [[ -n ${MARIADBD_BIN:-} && -n ${REDIS_SERVER_BIN:-} ]] ||
    sf_die "mariadbd or redis-server still not found after installation"
}

# ---------------------------------------------------------------------------
# Ports and probes
# ---------------------------------------------------------------------------

# True when something accepts TCP connections on 127.0.0.1:PORT.
sf_port_busy() {
  local port=$1
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port" 2>/dev/null
}

# Prints a free loopback port: PREFERRED when given and free, else one the
# kernel hands out (python3) or a random free one (bash probing).
sf_pick_port() {
  local preferred=${1:-} port i
  if [[ -n $preferred ]] && ! sf_port_busy "$preferred"; then
    printf '%s\n' "$preferred"
    return 0
  fi
  if command -v python3 >/dev/null 2>&1 &&
    port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null) && [[ -n $port ]]; then
    printf '%s\n' "$port"
    return 0
  fi
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + RANDOM % 40000))
    if ! sf_port_busy "$port"; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  sf_warn "no free loopback port found"
  return 1
}

# Splits scheme://[user[:password]@]host[:port][/path] into SF_URL_* globals.
# Percent-encoded user names and passwords are decoded.
sf_parse_url() {
  local url=$1
  local re='^([A-Za-z][A-Za-z0-9+.-]*)://(([^:@/]*)(:([^@/]*))?@)?(\[[^]/]+\]|[^:/?#]+)(:([0-9]+))?(/([^?#]*))?'
  [[ $url =~ $re ]] || return 1
  SF_URL_SCHEME=${BASH_REMATCH[1]}
  SF_URL_USER=$(sf_url_decode "${BASH_REMATCH[3]}")
  SF_URL_PASS=$(sf_url_decode "${BASH_REMATCH[5]}")
  SF_URL_HOST=${BASH_REMATCH[6]}
  SF_URL_HOST=${SF_URL_HOST#[}
  SF_URL_HOST=${SF_URL_HOST%]}
  SF_URL_PORT=${BASH_REMATCH[8]}
  SF_URL_PATH=${BASH_REMATCH[10]}
}

# URL with any password replaced by ***, for log lines.
sf_redact_url() {
  local url=$1 re='^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):[^@/]*@(.*)$'
  if [[ $url =~ $re ]]; then
    printf '%s:***@%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
  else
    printf '%s\n' "$url"
  fi
}

sf_url_decode() {
  local s=${1//+/ }
  printf '%b' "${s//%/\\x}"
}

# Runs SQL against the server of a mysql:// URL (database part ignored).
sf_mysql_exec() {
  local url=$1 sql=$2 client
  client=${MARIADB_BIN:-$(sf_find_bin mariadb || sf_find_bin mysql || true)}
  [[ -n $client ]] || {
    sf_warn "no mariadb client found"
    return 1
  }
  sf_parse_url "$url" || {
    sf_warn "cannot parse database URL"
    return 1
  }
  # MYSQL_PWD keeps the password off the process list.
  MYSQL_PWD=$SF_URL_PASS timeout 20 "$client" --no-defaults --protocol=tcp \
    -h "$SF_URL_HOST" -P "${SF_URL_PORT:-3306}" -u "${SF_URL_USER:-root}" \
    --connect-timeout=5 --batch --skip-column-names -e "$sql"
}

# True when the server of a mysql:// URL accepts a login (with the client),
# or at least a TCP connection (without it).
sf_mysql_up() {
  local url=$1
  sf_parse_url "$url" || return 1
  if [[ -n ${MARIADB_BIN:-} ]] || sf_find_bin mariadb >/dev/null || sf_find_bin mysql >/dev/null; then
    sf_mysql_exec "$url" 'SELECT 1' >/dev/null 2>&1
  else
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$SF_URL_HOST" "${SF_URL_PORT:-3306}" 2>/dev/null
  fi
}

# True when the server of a redis:// URL answers PING with PONG.
sf_redis_up() {
  local url=$1 cli reply
  sf_parse_url "$url" || return 1
  cli=${REDIS_CLI_BIN:-$(sf_find_bin redis-cli || true)}
  if [[ -n $cli ]]; then
    reply=$(timeout 5 "$cli" --no-auth-warning -u "$url" PING 2>/dev/null) || return 1
    [[ $reply == PONG ]]
  else
    sf_redis_ping_tcp "$SF_URL_HOST" "${SF_URL_PORT:-6379}" "$SF_URL_USER" "$SF_URL_PASS"
  fi
}

# PING over bash's /dev/tcp, for machines without redis-cli.
sf_redis_ping_tcp() {
  local host=$1 port=$2 user=${3:-} pass=${4:-}
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    if [[ -n $4 ]]; then
      if [[ -n $3 ]]; then printf "AUTH %s %s\r\n" "$3" "$4" >&3; else printf "AUTH %s\r\n" "$4" >&3; fi
      IFS= read -r line <&3
      [[ $line == +OK* ]] || exit 1
    fi
    printf "PING\r\n" >&3
    IFS= read -r line <&3
    [[ $line == +PONG* ]]
  ' _ "$host" "$port" "$user" "$pass" 2>/dev/null
}

# ---------------------------------------------------------------------------
# Private servers
# ---------------------------------------------------------------------------

# True when PID is a live (not zombie) process.
sf_pid_alive() {
  local pid=$1 stat
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/stat ]]; then
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
  fi
}

# Prints the pid recorded in PIDFILE when that process is alive and is NAME
# (so a stale pid file pointing at a recycled pid is never trusted).
sf_running_pid() {
  local pidfile=$1 name=$2 pid comm
  [[ -s $pidfile ]] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  sf_pid_alive "$pid" || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || ps -o comm= -p "$pid" 2>/dev/null || true)
  [[ $comm == "$name"* ]] || return 1
  printf '%s\n' "$pid"
}

# Decides what to do with a server of ours that is already running: when the
# script that started it is still alive it is shared and left alone, when it
# was orphaned (e.g. the script was killed) this shell adopts it so it is
# stopped at exit like a server started here.
sf_reuse_running() {
  local name=$1 pidfile=$2 pid=$3 label=$4 port=$5 ppid pcomm
  ppid=$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ' || true)
  pcomm=$(cat "/proc/$ppid/comm" 2>/dev/null || true)
  if [[ -n $ppid && $ppid != 1 && $pcomm == bash ]]; then
    sf_log "reusing $label on 127.0.0.1:$port (pid $pid, in use by process $ppid; it will stop it)"
  else
    sf_log "adopting $label left running by an earlier run on 127.0.0.1:$port (pid $pid)"
    SF_STARTED+=("$name|$pidfile|$pid")
  fi
}

# The unix socket path is limited to ~107 bytes; fall back to a short path
# derived from DIR when the repository lives deep in the file system.
sf_mariadb_socket() {
  local dir=$1 sock
  sock="$dir/mysqld.sock"
  if [[ ${#sock} -gt 100 ]]; then
    sock="${TMPDIR:-/tmp}/stock-flow-mariadb-$(printf '%s' "$dir" | cksum | cut -d' ' -f1).sock"
  fi
  printf '%s\n' "$sock"
}

sf_mariadb_socket_ping() {
  local sock=$1
  [[ -n ${MARIADB_BIN:-} ]] || return 2
  timeout 10 "$MARIADB_BIN" --no-defaults --protocol=socket -S "$sock" -uroot \
    --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1
}

# sf_start_private_mariadb DIR PORT
# Starts (initialising DIR/data the first time) a MariaDB server owned by this
# shell on 127.0.0.1:PORT, with root allowed from 127.0.0.1 without password.
# Logs the URL and sets SF_MARIADB_PORT_USED / SF_MARIADB_URL.
sf_start_private_mariadb() {
  local dir=$1 port=$2
  local datadir pidfile sock errlog user_opt=() pid running i timeout
  sf_resolve_bins
  [[ -n ${MARIADBD_BIN:-} ]] || sf_die "mariadbd not found (run sf_ensure_packages)"
  [[ -n ${MARIADB_INSTALL_DB_BIN:-} ]] || sf_die "mariadb-install-db not found (run sf_ensure_packages)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  datadir="$dir/data"
  pidfile="$dir/mariadbd.pid"
  errlog="$dir/error.log"
  sock=$(sf_mariadb_socket "$dir")
  # mariadbd refuses to run as root unless told to explicitly.
  [[ $EUID -eq 0 ]] && user_opt=(--user=root)

  if running=$(sf_running_pid "$pidfile" mariadbd); then
    port=$(cat "$dir/port" 2>/dev/null || echo "$port")
    sf_reuse_running mariadb "$pidfile" "$running" "private MariaDB" "$port"
    SF_MARIADB_PORT_USED=$port
    SF_MARIADB_URL="mysql://root@127.0.0.1:$port/"
    return 0
  fi
  if sf_port_busy "$port"; then
    sf_die "port $port is already in use by another program; choose another port for the private MariaDB"
  fi

  # The marker is written only after a successful initialisation, so a run
  # interrupted half-way is redone instead of leaving a broken data dir.
  if [[ ! -e $dir/.initialised ]]; then
    if [[ -e $datadir ]]; then
      sf_warn "removing incompletely initialised MariaDB data dir $datadir"
      rm -rf "$datadir"
    fi
    sf_log "initialising private MariaDB data dir $datadir"
    # With the 'normal' method the bootstrap creates password-less root
    # accounts for localhost, 127.0.0.1 and ::1.
    if ! "$MARIADB_INSTALL_DB_BIN" --no-defaults --datadir="$datadir" \
      --auth-root-authentication-method=normal --skip-test-db \
      "${user_opt[@]}" >"$dir/install.log" 2>&1; then
      tail -n 30 "$dir/install.log" >&2 || true
      sf_die "mariadb-install-db failed (log: $dir/install.log)"
    fi
    touch "$dir/.initialised"
  fi

  sf_log "starting private MariaDB on 127.0.0.1:$port (data: $datadir)"
  printf '%s\n' "$port" >"$dir/port"
  rm -f "$pidfile"
  # setsid: its own session, so a Ctrl-C in the terminal reaches only the
  # script, which then stops the service before the databases.
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  "${launcher[@]}" "$MARIADBD_BIN" --no-defaults "${user_opt[@]}" \
    --datadir="$datadir" --socket="$sock" --port="$port" --bind-address=127.0.0.1 \
    --pid-file="$pidfile" --log-error="$errlog" --skip-name-resolve \
    --innodb-buffer-pool-size="${SF_MARIADB_BUFFER_POOL:-512M}" --max-connections=1000 \
    --innodb-flush-log-at-trx-commit=1 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
    </dev/null >>"$dir/mariadbd.out" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$pidfile"
  SF_STARTED+=("mariadb|$pidfile|$pid")

  timeout=${SF_START_TIMEOUT:-60}
  for ((i = 0; i < timeout * 5; i++)); do
    if ! sf_pid_alive "$pid"; then
      tail -n 30 "$errlog" >&2 2>/dev/null || true
      sf_die "private MariaDB exited during start-up (log: $errlog)"
    fi
    if [[ -n ${MARIADB_BIN:-} ]]; then
      sf_mariadb_socket_ping "$sock" && break
    elif sf_port_busy "$port"; then
      break
    fi
    sleep 0.2
  done
  if ((i >= timeout * 5)); then
    tail -n 30 "$errlog" >&2 2>/dev/null || true
    sf_die "private MariaDB did not answer within ${timeout}s (log: $errlog)"
  fi

  # With --skip-name-resolve a TCP client from 127.0.0.1 does not match
  # root@localhost, so root@127.0.0.1 must exist; make sure of it on every
  # start (idempotent) in case someone dropped it.
  if [[ -n ${MARIADB_BIN:-} ]]; then
    timeout 20 "$MARIADB_BIN" --no-defaults --protocol=socket -S "$sock" -uroot -e "
      CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
      FLUSH PRIVILEGES;" ||
      sf_die "could not grant root@127.0.0.1 on the private MariaDB"
  fi
  SF_MARIADB_PORT_USED=$port
  SF_MARIADB_URL="mysql://root@127.0.0.1:$port/"
  sf_log "private MariaDB ready: $SF_MARIADB_URL"
}

# sf_start_private_redis DIR PORT
# Starts an append-only Redis owned by this shell on 127.0.0.1:PORT with its
# files in DIR (appendfsync from REDIS_APPENDFSYNC, default always; the append-only
# file is rewritten once it has grown past REDIS_AOF_REWRITE_MIN_SIZE, default 4gb,
# and doubled since the last rewrite: each rewrite forks a child that competes with
# the fsync of every write, so a small threshold stalls a sale every few seconds;
# its background tasks run REDIS_HZ times a second, default 100: Redis's own 10
# lets one pass of its expiry of keys take up to 25 ms, and a sale expires an
# order record for every order, so each pass held up every order in flight).
# Logs the URL and sets SF_REDIS_PORT_USED / SF_REDIS_URL.
sf_start_private_redis() {
  local dir=$1 port=$2
  local pidfile logfile pid running i timeout fsync=${REDIS_APPENDFSYNC:-always}
  local rewrite_min=${REDIS_AOF_REWRITE_MIN_SIZE:-4gb} hz=${REDIS_HZ:-100}
  sf_resolve_bins
  [[ -n ${REDIS_SERVER_BIN:-} ]] || sf_die "redis-server not found (run sf_ensure_packages)"
  case $fsync in
  always | everysec | no) ;;
  *) sf_die "REDIS_APPENDFSYNC must be always, everysec or no (got '$fsync')" ;;
  esac
  [[ $rewrite_min =~ ^[0-9]+([kmg]b)?$ ]] ||
    sf_die "REDIS_AOF_REWRITE_MIN_SIZE must be a size such as 64mb or 4gb (got '$rewrite_min')"
  if ! [[ $hz =~ ^[0-9]+$ ]] || ((hz < 1 || hz > 500)); then
    sf_die "REDIS_HZ must be a whole number from 1 to 500 (got '$hz')"
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  pidfile="$dir/redis.pid"
  logfile="$dir/redis.log"

  if running=$(sf_running_pid "$pidfile" redis-server); then
    port=$(cat "$dir/port" 2>/dev/null || echo "$port")
    sf_reuse_running redis "$pidfile" "$running" "private Redis" "$port"
    SF_REDIS_PORT_USED=$port
    SF_REDIS_URL="redis://127.0.0.1:$port/0"
    return 0
  fi
  if sf_port_busy "$port"; then
    sf_die "port $port is already in use by another program; choose another port for the private Redis"
  fi

  sf_log "starting private Redis on 127.0.0.1:$port (appendfsync $fsync, AOF rewrite past $rewrite_min, hz $hz, data: $dir)"
  printf '%s\n' "$port" >"$dir/port"
  rm -f "$pidfile"
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  "${launcher[@]}" "$REDIS_SERVER_BIN" --port "$port" --bind 127.0.0.1 --dir "$dir" \
    --appendonly yes --appendfsync "$fsync" --save "" --daemonize no \
    --auto-aof-rewrite-min-size "$rewrite_min" --hz "$hz" \
    --logfile "$logfile" --pidfile "$pidfile" \
    </dev/null >>"$dir/redis.out" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$pidfile"
  SF_STARTED+=("redis|$pidfile|$pid")

  timeout=${SF_START_TIMEOUT:-60}
  for ((i = 0; i < timeout * 5; i++)); do
    if ! sf_pid_alive "$pid"; then
      tail -n 30 "$logfile" >&2 2>/dev/null || true
      sf_die "private Redis exited during start-up (log: $logfile)"
    fi
    # PING answers -LOADING while the append-only file is replayed, so only
    # PONG counts as ready.
    sf_redis_up "redis://127.0.0.1:$port/0" && break
    sleep 0.2
  done
  if ((i >= timeout * 5)); then
    tail -n 30 "$logfile" >&2 2>/dev/null || true
    sf_die "private Redis did not answer within ${timeout}s (log: $logfile)"
  fi
  SF_REDIS_PORT_USED=$port
  SF_REDIS_URL="redis://127.0.0.1:$port/0"
  sf_log "private Redis ready: $SF_REDIS_URL"
}

# Stops the servers this shell started (newest first): SIGTERM for a clean
# shutdown, SIGKILL only after SF_STOP_TIMEOUT seconds. Idempotent; meant
# for EXIT traps.
sf_stop_private() {
  local entry name pidfile pid i timeout=${SF_STOP_TIMEOUT:-60} idx
  for ((idx = ${#SF_STARTED[@]} - 1; idx >= 0; idx--)); do
    entry=${SF_STARTED[idx]}
    IFS='|' read -r name pidfile pid <<<"$entry"
    # The server may have rewritten its pid file; both name the same process.
    if sf_pid_alive "$pid"; then
      sf_log "stopping private $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < timeout * 5; i++)); do
        sf_pid_alive "$pid" || break
        sleep 0.2
      done
      if sf_pid_alive "$pid"; then
        sf_warn "private $name (pid $pid) did not stop within ${timeout}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    # Reap it when it is a child of this shell; harmless otherwise.
    wait "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
  SF_STARTED=()
}

# Everything an EXIT trap of the ops scripts needs to undo.
sf_cleanup() {
  sf_restore_policy_rc
  sf_stop_private
}

# sf_choose_port DEFAULT EXPLICIT PIDFILE NAME LABEL
# Picks the port of a private server as ops/run does: DEFAULT when free (or
# when our own server from an earlier run holds it: the start function reuses
# it), a free one otherwise, unless EXPLICIT (the user's setting) named it.
sf_choose_port() {
  local default=$1 explicit=$2 pidfile=$3 name=$4 label=$5 port
  if sf_running_pid "$pidfile" "$name" >/dev/null; then
    # Our own server from an earlier run: the start function reuses it.
    printf '%s\n' "$default"
    return 0
  fi
  if sf_port_busy "$default"; then
    [[ -n $explicit ]] && sf_die "port $default ($label) is already in use by another program"
    port=$(sf_pick_port "") || sf_die "no free port for the private $label"
    sf_log "port $default is taken by another program; private $label uses $port instead"
    printf '%s\n' "$port"
  else
    printf '%s\n' "$default"
  fi
}

# sf_ensure_program PROGRAM PACKAGE
# Installs Debian's PACKAGE when PROGRAM is missing, under the same rules as
# sf_ensure_packages: SF_NO_INSTALL=1 refuses, and a temporary policy-rc.d
# keeps the package's system service from starting. Call it in the script's
# own shell (not in $(...)), so an EXIT trap running sf_cleanup can remove
# the policy-rc.d if the installation is interrupted.
sf_ensure_program() {
  local program=$1 package=$2 rc=0
  sf_find_bin "$program" >/dev/null && return 0
  [[ ${SF_NO_INSTALL:-0} == 1 ]] && sf_die "$program is missing and SF_NO_INSTALL=1; install $package"
  command -v apt-get >/dev/null 2>&1 ||
    sf_die "$program is missing; install $package with your package manager (apt-get not found)"
  sf_log "installing $package (missing: $program)"
  sf_hold_service_starts
  sf_as_root env DEBIAN_FRONTEND=noninteractive apt-get update || rc=$?
  if [[ $rc -eq 0 ]]; then
    sf_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "$package" || rc=$?
  fi
  sf_restore_policy_rc
  [[ $rc -eq 0 ]] || sf_die "installing $package failed (exit $rc)"
  sf_find_bin "$program" >/dev/null || sf_die "$program still not found after installing $package"
}

# sf_http_status PORT PATH
# Prints the HTTP status code of GET PATH on 127.0.0.1:PORT (bash's /dev/tcp,
# so it needs no curl); fails when nothing answers within 5 s.
sf_http_status() {
  local port=$1 path=$2
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
    IFS=" " read -r _ code _ <&3 || exit 1
    [[ $code =~ ^[0-9]{3}$ ]] && printf "%s\n" "$code"
  ' _ "$port" "$path" 2>/dev/null
}
