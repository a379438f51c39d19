# shellcheck shell=bash
# deploy/rehearsal/hosts.sh — helpers for deploy/rehearsal/run: two "hosts" as network
# namespaces joined by a veth pair, and variants of deploy/local/lib.sh's start functions that
# run a server inside a namespace, bound to that host's address. Sourced after
# deploy/local/lib.sh (log, die, _secret, _wait_until, _alive, _pg_bin, _portpick, AIIM_WEED …).
#
# The production templates are used where they exist (deploy/redis/redis.conf,
# deploy/coturn/turnserver.conf, deploy/nginx/aiim.conf, as rendered by the bare-metal install
# scripts), with only the paths and the rehearsal's private peer range adjusted.

RH_NS_MAIN=aiim-main
RH_NS_MEDIA=aiim-media
RH_IP_MAIN=10.77.0.1
RH_IP_MEDIA=10.77.0.2
RH_VETH_MAIN=aiim-vmain
RH_VETH_MEDIA=aiim-vmedia

# in_ns NS CMD...: run CMD in namespace NS (foreground).
# fd 9 (deploy/rehearsal/run's lock) is closed for every child: a server left behind by a
# killed run must not keep the next run from starting (and cleaning it up).
in_ns() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@" 9>&-
}

# rh_ns_kill NS: end every process inside namespace NS (all of them were started by this script
# in a namespace it created): TERM, up to 10 s, then KILL.
rh_ns_kill() {
  local ns=$1 pids i
  ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || return 0
  pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
  [[ -n ${pids// /} ]] || return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    [[ -n ${pids// /} ]] || return 0
    sleep 0.2
  done
  log "namespace $ns: still running after SIGTERM: $pids; SIGKILL"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.5
}

rh_netns_down() {
  local ns
  for ns in "$RH_NS_MAIN" "$RH_NS_MEDIA"; do
    rh_ns_kill "$ns"
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns"; then
      ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
    fi
  done
  # A veth left in the root namespace by an interrupted setup.
  ip link del "$RH_VETH_MAIN" 2>/dev/null || true
}

rh_netns_up() {
  rh_netns_down
  ip netns add "$RH_NS_MAIN"
  ip netns add "$RH_NS_MEDIA"
  ip link add "$RH_VETH_MAIN" type veth peer name "$RH_VETH_MEDIA"
  ip link set "$RH_VETH_MAIN" netns "$RH_NS_MAIN"
  ip link set "$RH_VETH_MEDIA" netns "$RH_NS_MEDIA"
  ip -n "$RH_NS_MAIN" addr add "$RH_IP_MAIN/24" dev "$RH_VETH_MAIN"
  ip -n "$RH_NS_MEDIA" addr add "$RH_IP_MEDIA/24" dev "$RH_VETH_MEDIA"
  local ns
  for ns in "$RH_NS_MAIN" "$RH_NS_MEDIA"; do ip -n "$ns" link set lo up; done
  ip -n "$RH_NS_MAIN" link set "$RH_VETH_MAIN" up
  ip -n "$RH_NS_MEDIA" link set "$RH_VETH_MEDIA" up
  log "namespaces $RH_NS_MAIN ($RH_IP_MAIN) and $RH_NS_MEDIA ($RH_IP_MEDIA) joined by a veth pair"
}

# rh_bg NAME NS CMD...: start CMD in NS in the background, in its own session, output to
# STATE/logs/NAME.log; records STATE/pids/NAME.pid. setsid and `ip netns exec` both exec in
# place, so $! is the server's own pid.
rh_bg() {
  local name=$1 ns=$2
  shift 2
  setsid ip netns exec "$ns" "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 9>&- &
  RH_LAST_PID=$!
  printf '%s\n' "$RH_LAST_PID" >"$STATE/pids/$name.pid"
  # No job-control chatter ("Killed …") when the rehearsal SIGKILLs it on purpose.
  disown "$RH_LAST_PID" 2>/dev/null || true
}

# ------------------------------------------------------------------------------------------------
# Redis on the main host: the production template (as rendered by install-main-host), bound to
# the main host's address.
rh_start_redis() {
  local rendered=$1 pass=$2 dir="$STATE/redis" pid
  mkdir -p "$dir"
  (
    umask 077
    sed "s|^dir .*|dir $dir|" "$rendered" >"$dir/redis.conf"
    cat >>"$dir/redis.conf" <<EOF
# rehearsal overrides: TLS only (the clear-text port is off), client certificates required
bind $RH_IP_MAIN
port 0
tls-port 6379
tls-cert-file $TLS/redis-server.pem
tls-key-file $TLS/redis-server.key
tls-ca-cert-file $TLS/ca.pem
tls-auth-clients yes
daemonize yes
pidfile $STATE/pids/redis.pid
logfile $STATE/logs/redis.log
maxmemory 512mb
EOF
  )
  in_ns "$RH_NS_MAIN" redis-server "$dir/redis.conf" >>"$STATE/logs/redis.log" 2>&1 ||
    { _tail_log "$STATE/logs/redis.log"; die "redis-server failed to start"; }
  _wait_until "redis pidfile" 10 - test -s "$STATE/pids/redis.pid" || die "redis did not start"
  pid=$(cat "$STATE/pids/redis.pid")
  _wait_until redis 30 "$pid" rh_redis_ping "$RH_NS_MAIN" "$pass" ||
    { _tail_log "$STATE/logs/redis.log"; die "redis did not answer PING"; }
  log "redis      $RH_IP_MAIN:6379 TLS only in $RH_NS_MAIN (pid $pid; deploy/redis/redis.conf: AOF everysec, noeviction)"
}

# RH_REDIS_TLS: redis-cli's TLS options (CA and a client certificate), set by deploy/rehearsal/run.
rh_redis_ping() { [[ $(REDISCLI_AUTH=$2 in_ns "$1" redis-cli "${RH_REDIS_TLS[@]}" -h "$RH_IP_MAIN" -p 6379 ping 2>/dev/null) == PONG ]]; }

# ------------------------------------------------------------------------------------------------
# PostgreSQL on the main host, listening on the main host's address; clients of the media host
# connect over the veth with a password (scram).
rh_start_postgres() {
  local pass=$1 bin root
  bin=$(_pg_bin)
  root=$(mktemp -d /tmp/aiim-rehearsal-pg.XXXXXX)
  printf '%s\n' "$root" >"$STATE/pg.location"
  chown postgres:postgres "$root"
  chmod 700 "$root"
  install -d -o postgres -g postgres -m 700 "$root/run"
  (cd / && runuser -u postgres -- "$bin/initdb" -D "$root/data" -U postgres --no-locale -E UTF8 \
    --auth-local=peer --auth-host=scram-sha-256 --no-instructions) >>"$STATE/logs/postgres.log" 2>&1 ||
    { _tail_log "$STATE/logs/postgres.log"; die "initdb failed"; }
  # TLS: the server certificate of the rehearsal's CA (key owned by postgres, 0600); the hosts'
  # network gets a hostssl line only, so a clear-text connection finds no pg_hba entry.
  install -d -o postgres -g postgres -m 700 "$root/tls"
  install -o postgres -g postgres -m 644 "$TLS/postgres-server.pem" "$root/tls/server.pem"
  install -o postgres -g postgres -m 600 "$TLS/postgres-server.key" "$root/tls/server.key"
  cat >>"$root/data/postgresql.conf" <<EOF
# rehearsal
listen_addresses = '$RH_IP_MAIN'
port = 5432
unix_socket_directories = '$root/run'
max_connections = 300
wal_level = replica
ssl = on
ssl_cert_file = '$root/tls/server.pem'
ssl_key_file = '$root/tls/server.key'
ssl_min_protocol_version = 'TLSv1.2'
EOF
  printf 'hostssl all all 10.77.0.0/24 scram-sha-256\n' >>"$root/data/pg_hba.conf"
  # pg_ctl runs inside the namespace (root enters it, then becomes postgres).
  (cd / && setsid -w ip netns exec "$RH_NS_MAIN" runuser -u postgres -- \
    "$bin/pg_ctl" -D "$root/data" -w -t 60 start) >>"$STATE/logs/postgres.log" 2>&1 9>&- ||
    { _tail_log "$STATE/logs/postgres.log"; die "postgres did not start"; }
  head -n1 "$root/data/postmaster.pid" >"$STATE/pids/postgres.pid"
  (cd / && runuser -u postgres -- "$bin/psql" -X -q -h "$root/run" -p 5432 -d postgres \
    -v ON_ERROR_STOP=1) >>"$STATE/logs/postgres.log" 2>&1 <<SQL ||
CREATE ROLE aiim LOGIN PASSWORD '$pass';
CREATE DATABASE aiim OWNER aiim;
SQL
    { _tail_log "$STATE/logs/postgres.log"; die "creating role/database aiim failed"; }
  log "postgres   $RH_IP_MAIN:5432 (ssl = on, hostssl only) in $RH_NS_MAIN (pid $(cat "$STATE/pids/postgres.pid"), cluster $root/data)"
}

rh_stop_postgres() {
  local root bin
  [[ -s $STATE/pg.location ]] || return 0
  root=$(cat "$STATE/pg.location")
  bin=$(_pg_bin)
  if [[ -f $root/data/postmaster.pid ]]; then
    (cd / && runuser -u postgres -- "$bin/pg_ctl" -D "$root/data" -m fast -w -t 30 stop) \
      >>"$STATE/logs/postgres.log" 2>&1 || true
  fi
  [[ $root == /tmp/aiim-rehearsal-pg.* ]] && rm -rf "$root"
  rm -f "$STATE/pg.location"
}

# ------------------------------------------------------------------------------------------------
# SeaweedFS (`weed mini`, the MinIO stand-in of deploy/local) on the media host's address, with
# signed requests only; same flags as lib.sh's start_s3. Ports come from RH_S3_PORTS (picked in
# the root namespace, so weed's /tmp gRPC socket names cannot collide with another weed).
rh_start_s3() {
  local ak=$1 sk=$2 dir="$STATE/s3" master volume filer s3 admin pid
  read -r master volume filer s3 admin <<<"$RH_S3_PORTS"
  mkdir -p "$dir"/{data,config,admin}
  printf '%s\n' "$RH_S3_PORTS" >"$dir/ports"
  (
    umask 077
    cat >"$dir/s3.json" <<EOF
{"identities": [{"name": "aiim", "credentials": [{"accessKey": "$ak", "secretKey": "$sk"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
  )
  rh_bg s3 "$RH_NS_MEDIA" "$AIIM_WEED" -logtostderr -config_dir="$dir/config" mini \
    -dir="$dir/data" -admin.dataDir="$dir/admin" \
    -ip="$RH_IP_MEDIA" -ip.bind="$RH_IP_MEDIA" \
    -master.port="$master" -master.port.grpc=$((master + 10000)) \
    -volume.port="$volume" -volume.port.grpc=$((volume + 10000)) \
    -filer.port="$filer" -filer.port.grpc=$((filer + 10000)) \
    -s3.port="$s3" -s3.port.grpc=$((s3 + 10000)) \
    -admin.port="$admin" -admin.port.grpc=$((admin + 10000)) \
    -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.telemetry=false \
    -filer.localSocket="$dir/filer.sock" -s3.localSocket="$dir/s3.sock" \
    -s3.config="$dir/s3.json"
  pid=$RH_LAST_PID
  _wait_until s3 90 "$pid" in_ns "$RH_NS_MEDIA" bash -c "exec 3<>/dev/tcp/$RH_IP_MEDIA/$s3" ||
    { _tail_log "$STATE/logs/s3.log"; die "SeaweedFS S3 did not start"; }
  local i
  for ((i = 0; i < 20; i++)); do
    if in_ns "$RH_NS_MEDIA" "$AIIM_VENV/bin/python" "$AIIM_LOCAL_DIR/s3check.py" \
      "http://$RH_IP_MEDIA:$s3" "$ak" "$sk" aiim-media us-east-1 >>"$STATE/logs/s3.log" 2>&1; then
      log "s3         $RH_IP_MEDIA:$s3 in $RH_NS_MEDIA (pid $pid, weed mini, signed requests only)"
      return 0
    fi
    sleep 1
  done
  _tail_log "$STATE/logs/s3.log"
  die "S3 bucket/signature check failed"
}

rh_s3_cleanup_sockets() {
  local p ports=()
  [[ -s $STATE/s3/ports ]] || return 0
  read -ra ports <"$STATE/s3/ports"
  for p in "${ports[@]}"; do rm -f /tmp/seaweedfs-*-grpc-"$((p + 10000))".sock; done
}

# ------------------------------------------------------------------------------------------------
# coturn on the media host: deploy/coturn/turnserver.conf as rendered by install-media-host
# (denied private peer ranges, no loopback peers, no CLI), plus the one documented exception:
# the relay's own private address as an allowed peer (two clients relaying through it).
rh_start_coturn() {
  local rendered=$1 dir="$STATE/coturn" pid
  mkdir -p "$dir"
  (
    umask 077
    sed -e "s|^log-file=.*|log-file=$STATE/logs/coturn.log|" "$rendered" >"$dir/turnserver.conf"
    cat >>"$dir/turnserver.conf" <<EOF
# rehearsal overrides
allowed-peer-ip=$RH_IP_MEDIA
userdb=$dir/turndb
pidfile=$STATE/pids/coturn.pid
no-stdout-log
EOF
  )
  rh_bg coturn-stdout "$RH_NS_MEDIA" turnserver -c "$dir/turnserver.conf"
  pid=$RH_LAST_PID
  printf '%s\n' "$pid" >"$STATE/pids/coturn.pid"
  _wait_until coturn 30 "$pid" in_ns "$RH_NS_MEDIA" bash -c "exec 3<>/dev/tcp/$RH_IP_MEDIA/3478" ||
    { _tail_log "$STATE/logs/coturn.log"; die "coturn did not start"; }
  log "coturn     $RH_IP_MEDIA:3478 in $RH_NS_MEDIA (pid $pid; deploy/coturn/turnserver.conf)"
}

# ------------------------------------------------------------------------------------------------
# nginx on the main host: deploy/nginx/aiim.conf as rendered by install-main-host (upstream =
# the gateway instances), TLS with a certificate of the rehearsal's own, listening on :443.
rh_start_nginx() {
  local rendered=$1 dir="$STATE/nginx"
  mkdir -p "$dir"/{tls,acme,tmp}
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=im.example.com" \
    -addext "subjectAltName=IP:$RH_IP_MAIN,DNS:im.example.com" \
    -keyout "$dir/tls/privkey.pem" -out "$dir/tls/fullchain.pem" >/dev/null 2>&1 ||
    die "openssl could not make the rehearsal certificate"
  sed -e "s|/etc/nginx/tls|$dir/tls|g" -e "s|/var/log/nginx|$STATE/logs|g" \
    -e "s|/var/www/acme|$dir/acme|g" -e "s|server 127\.0\.0\.1:|server $RH_IP_MAIN:|" \
    -e '/listen \[::\]/d' "$rendered" >"$dir/aiim.conf"
  cat >"$dir/nginx.conf" <<EOF
# rehearsal wrapper around deploy/nginx/aiim.conf
worker_processes 1;
pid $dir/nginx.pid;
error_log $STATE/logs/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    include $dir/aiim.conf;
}
EOF
  chmod -R a+rX "$dir/tmp"
  in_ns "$RH_NS_MAIN" nginx -t -q -c "$dir/nginx.conf" 2>>"$STATE/logs/nginx-error.log" ||
    { _tail_log "$STATE/logs/nginx-error.log"; die "nginx -t failed for the rendered deploy/nginx/aiim.conf"; }
  rh_bg nginx "$RH_NS_MAIN" nginx -c "$dir/nginx.conf" -g 'daemon off;'
  _wait_until nginx 15 "$RH_LAST_PID" in_ns "$RH_NS_MAIN" \
    curl -fsS -m 2 -o /dev/null --cacert "$dir/tls/fullchain.pem" "https://$RH_IP_MAIN/health" ||
    { _tail_log "$STATE/logs/nginx-error.log"; die "nginx does not proxy /health to the gateways"; }
  log "nginx      https://$RH_IP_MAIN (TLS) -> gateways, in $RH_NS_MAIN (pid $RH_LAST_PID)"
}
