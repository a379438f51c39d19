# shellcheck shell=bash
# deploy/bare-metal/lib-install.sh — shared by install-main-host and install-media-host.
# Sourced, never executed.
#
# Layout it creates under PREFIX (default /):
#   opt/aiim/releases/<id>/bin/   aiim-<service> executables, their *.resources bundles (each
#                                 backend's SQL migrations), the Swift runtime libraries they
#                                 link (found with ldd; the executables' RUNPATH includes
#                                 $ORIGIN), aiim-run, aiim-trace
#   opt/aiim/bin -> releases/<id>/bin   switched atomically; the previous release stays for rollback
#   opt/aiim/docs/DEPLOY.md
#   etc/aiim/<service>.env        rendered from the host env file (fully expanded KEY=value)
#   etc/systemd/system/aiim@.service
#   etc/aiim/rendered/…           redis.conf / nginx aiim.conf / turnserver.conf for this host
set -euo pipefail

AIIM_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PREFIX=/
SYSTEMD=1
APT=1
BIN_DIR=""
ENV_FILE=""
FORCE_ENV=0
ALLOW_PLACEHOLDERS=0
RELEASE_ID=""
declare -A REPLICAS=()
# Base HTTP_PORT per service on bare metal (instance n listens on base + n - 1).
declare -A BASE_PORT=([gateway]=8080 [messaging]=8180 [media]=8280 [calls]=8380)

ilog() { printf '[install] %s\n' "$*" >&2; }
idie() {
  ilog "ERROR: $*"
  exit 1
}

install_usage() {
  cat >&2 <<EOF
usage: $0 [options]
  --env FILE            host env file (from deploy/env/$HOST_ROLE-host.env.example); required
                        unless $PREFIX/etc/aiim/<service>.env already exist
  --bin-dir DIR         where the built executables are (default: swift build -c release
                        --show-bin-path, built beforehand with swift build -c release)
  --replicas S=N,...    instances to enable, e.g. ${SERVICES[0]}=2,${SERVICES[1]}=3 (default 2 each)
  --prefix DIR          install under DIR instead of / (dry run / packaging); implies no
                        user creation, no apt, and chown only when the aiim user exists
  --no-systemd          do not daemon-reload / enable / restart units
  --no-apt              do not apt-get install the runtime libraries
  --force-env           overwrite existing etc/aiim/<service>.env
  --allow-placeholders  accept CHANGE_ME values (testing with the example env files)
  --release ID          release directory name (default: UTC timestamp)
EOF
  exit 2
}

parse_install_args() {
  while (($#)); do
    case $1 in
      --env) ENV_FILE=${2:?}; shift ;;
      --bin-dir) BIN_DIR=${2:?}; shift ;;
      --prefix) PREFIX=${2:?}; shift ;;
      --replicas)
        local kv
        IFS=, read -ra kv <<<"${2:?}"
        for kv in "${kv[@]}"; do
          [[ $kv =~ ^([a-z]+)=([0-9]+)$ ]] || idie "bad --replicas item '$kv'"
          [[ " ${SERVICES[*]} " == *" ${BASH_REMATCH[1]} "* ]] || idie "${BASH_REMATCH[1]} is not installed on this host (${SERVICES[*]})"
          REPLICAS[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
        done
        shift
        ;;
      --no-systemd) SYSTEMD=0 ;;
      --no-apt) APT=0 ;;
      --force-env) FORCE_ENV=1 ;;
      --allow-placeholders) ALLOW_PLACEHOLDERS=1 ;;
      --release) RELEASE_ID=${2:?}; shift ;;
      -h | --help) install_usage ;;
      *) ilog "unknown option $1"; install_usage ;;
    esac
    shift
  done
  local s
  for s in "${SERVICES[@]}"; do : "${REPLICAS[$s]:=2}"; done
  mkdir -p "$PREFIX"
  PREFIX=$(cd "$PREFIX" && pwd)
  [[ $PREFIX == / ]] && PREFIX=""
  if [[ -n $PREFIX ]]; then APT=0; fi
  [[ -n $RELEASE_ID ]] || RELEASE_ID=$(date -u +%Y%m%dT%H%M%SZ)
  [[ $RELEASE_ID =~ ^[A-Za-z0-9._-]+$ ]] || idie "bad --release '$RELEASE_ID'"
  if [[ -z $PREFIX ]] && ((EUID != 0)); then idie "run as root (or use --prefix DIR for a dry run)"; fi
}

find_bin_dir() {
  if [[ -z $BIN_DIR ]]; then
    command -v swift >/dev/null || idie "no --bin-dir and no swift to ask for the build's bin path"
    BIN_DIR=$(cd "$AIIM_SRC" && swift build -c release --show-bin-path)
  fi
  [[ -d $BIN_DIR ]] || idie "bin dir $BIN_DIR does not exist (build first: swift build -c release)"
  BIN_DIR=$(cd "$BIN_DIR" && pwd)
  local s
  for s in "${SERVICES[@]}"; do
    [[ -x $BIN_DIR/aiim-$s ]] || idie "$BIN_DIR/aiim-$s is missing (build first: swift build -c release)"
  done
  # Each backend ships its own SQL migrations as its library's resource bundle.
  local bundle
  for s in "${SERVICES[@]}"; do
    case $s in
      messaging) bundle=aiim_MessagingCore.resources ;;
      media) bundle=aiim_MediaCore.resources ;;
      calls) bundle=aiim_CallsCore.resources ;;
      *) continue ;;
    esac
    [[ -d $BIN_DIR/$bundle ]] || idie "$BIN_DIR/$bundle (aiim-$s's SQL migrations) is missing"
  done
}

ensure_runtime() {
  if ((APT)); then
    local missing=() p st
    for p in libpq5 libhiredis0.14 libcurl4 libssl3 ca-certificates curl; do
      st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) || st=""
      [[ $st == ii* ]] || missing+=("$p")
    done
    if ((${#missing[@]})); then
      ilog "apt-get install ${missing[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
        idie "apt-get install failed"
    fi
  fi
  if [[ -z $PREFIX ]] && ! id aiim >/dev/null 2>&1; then
    ilog "creating system user aiim"
    useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin aiim
  fi
}

# _own PATH MODE: root:aiim when the aiim group exists (real installs), else leave the owner.
_own() {
  chmod "$2" "$1"
  if getent group aiim >/dev/null 2>&1; then chown root:aiim "$1"; fi
}

install_binaries() {
  local opt="$PREFIX/opt/aiim" rel s lib r
  rel="$opt/releases/$RELEASE_ID/bin"
  [[ ! -e $rel ]] || idie "release $RELEASE_ID already exists ($rel)"
  mkdir -p "$rel" "$opt/docs"
  for s in "${SERVICES[@]}"; do
    install -m 0755 "$BIN_DIR/aiim-$s" "$rel/aiim-$s"
    # Swift runtime libraries that live in the toolchain, not in the OS: next to the binary.
    while read -r lib; do
      [[ -e $rel/$(basename "$lib") ]] || install -m 0644 "$lib" "$rel/"
    done < <(ldd "$BIN_DIR/aiim-$s" | awk '$3 ~ /\/lib\/swift\// {print $3}')
    if ldd "$BIN_DIR/aiim-$s" | grep -q 'not found'; then
      ldd "$BIN_DIR/aiim-$s" | grep 'not found' >&2
      idie "aiim-$s: shared libraries missing on this host"
    fi
  done
  for r in "$BIN_DIR"/*.resources; do
    [[ -d $r ]] || continue
    case $(basename "$r") in *Tests.resources) continue ;; esac
    cp -R "$r" "$rel/"
  done
  # An all-in-one host (both install scripts on one machine): keep the other role's services
  # of the current release in the new one (hard links; releases are never modified).
  if [[ -d $opt/bin/ ]]; then
    for r in "$opt"/bin/aiim-gateway "$opt"/bin/aiim-messaging "$opt"/bin/aiim-media "$opt"/bin/aiim-calls \
      "$opt"/bin/*.so "$opt"/bin/*.resources; do
      [[ -e $r && ! -e $rel/$(basename "$r") ]] || continue
      cp -al "$(readlink -f "$r")" "$rel/" 2>/dev/null || cp -a "$(readlink -f "$r")" "$rel/"
    done
  fi
  install -m 0755 "$AIIM_SRC/deploy/systemd/aiim-run" "$rel/aiim-run"
  install -m 0755 "$AIIM_SRC/deploy/trace" "$rel/aiim-trace"
  install -m 0644 "$AIIM_SRC/docs/DEPLOY.md" "$opt/docs/DEPLOY.md" 2>/dev/null || true
  # Atomic switch; the old release stays for `ln -sfn releases/<old>/bin /opt/aiim/bin`.
  ln -sfn "releases/$RELEASE_ID/bin" "$opt/bin.new"
  mv -T "$opt/bin.new" "$opt/bin"
  ilog "binaries of ${SERVICES[*]} -> $opt/releases/$RELEASE_ID/bin ($(du -sh "$rel" | cut -f1)), $opt/bin points there"
}

# Expands the host env file with bash (so ${A:?msg} and ${A} work exactly as in docker compose)
# in a clean environment, and prints KEY=value for every key the file assigns, in file order.
render_env() {
  local file=$1
  env -i PATH=/usr/bin:/bin bash -c '
    set -euo pipefail
    set -a
    # shellcheck disable=SC1090
    source "$1"
    set +a
    for k in $(sed -nE "s/^([A-Za-z_][A-Za-z0-9_]*)=.*/\1/p" "$1" | awk "!seen[\$0]++"); do
      v=${!k-}
      case $v in *$'"'"'\n'"'"'*) echo "$k: multi-line values are not supported" >&2; exit 1 ;; esac
      printf "%s=%s\n" "$k" "$v"
    done' render "$file"
}

install_env_files() {
  local etc="$PREFIX/etc/aiim" s out rendered
  mkdir -p "$etc"
  _own "$etc" 0750
  if [[ -n $ENV_FILE ]]; then
    [[ -r $ENV_FILE ]] || idie "cannot read $ENV_FILE"
    rendered=$(render_env "$ENV_FILE") || idie "$ENV_FILE: a required value is missing (see above)"
    if grep -q 'CHANGE_ME' <<<"$rendered"; then
      if ((ALLOW_PLACEHOLDERS)); then
        ilog "WARNING: $ENV_FILE still has CHANGE_ME placeholders (allowed by --allow-placeholders)"
      else
        grep -n 'CHANGE_ME' <<<"$rendered" | sed 's/=.*/=CHANGE_ME…/' >&2
        idie "$ENV_FILE still has CHANGE_ME placeholders"
      fi
    fi
  fi
  for s in "${SERVICES[@]}"; do
    out="$etc/$s.env"
    if [[ -e $out && $FORCE_ENV == 0 ]]; then
      ilog "keeping existing $out (--force-env to replace)"
      continue
    fi
    [[ -n $ENV_FILE ]] || idie "$out does not exist: give --env FILE"
    {
      printf '# rendered from %s by %s on %s; KEY=value, taken literally by aiim-run\n' \
        "$(basename "$ENV_FILE")" "$(basename "$0")" "$(date -u +%FT%TZ)"
      # Per-service base port (instance n: base + n - 1); INSTANCE_ID comes from the unit.
      grep -vE '^(HTTP_PORT|INSTANCE_ID)=' <<<"$rendered"
      printf 'HTTP_PORT=%s\n' "${BASE_PORT[$s]}"
    } >"$out.tmp"
    _own "$out.tmp" 0640
    mv "$out.tmp" "$out"
    ilog "wrote $out (HTTP_PORT base ${BASE_PORT[$s]})"
  done
}

# _host_var NAME: a value from the rendered env of this host (for config templates).
_host_var() { sed -n "s/^$1=//p" "$PREFIX/etc/aiim/${SERVICES[0]}.env" | tail -n1; }

install_unit() {
  local dir="$PREFIX/etc/systemd/system"
  mkdir -p "$dir"
  install -m 0644 "$AIIM_SRC/deploy/systemd/aiim@.service" "$dir/aiim@.service"
  ilog "unit $dir/aiim@.service"
}

# Instances in start order: <service>-1 .. <service>-N per service.
instances() {
  local s i
  for s in "${SERVICES[@]}"; do
    for ((i = 1; i <= REPLICAS[$s]; i++)); do printf '%s-%s\n' "$s" "$i"; done
  done
}

# Rolling (re)start: one instance at a time, each ready before the next, so an upgrade never
# takes a whole service down; surplus instances (lower replica count) are stopped.
enable_units() {
  local inst s n port deadline
  if ((SYSTEMD == 0)); then
    ilog "--no-systemd: not enabling; instances would be: $(instances | tr '\n' ' ')"
    return 0
  fi
  [[ -d /run/systemd/system ]] || idie "systemd is not running here (use --no-systemd)"
  systemctl daemon-reload
  for inst in $(instances); do
    s=${inst%-*} n=${inst##*-}
    port=$((BASE_PORT[$s] + n - 1))
    systemctl enable "aiim@$inst" >/dev/null 2>&1
    systemctl restart "aiim@$inst"
    deadline=$((SECONDS + 60))
    until curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$port/ready"; do
      ((SECONDS < deadline)) || idie "aiim@$inst not ready after 60 s (journalctl -u aiim@$inst)"
      sleep 1
    done
    ilog "aiim@$inst ready on :$port"
  done
  for s in "${SERVICES[@]}"; do
    for inst in $(systemctl list-units --plain --no-legend "aiim@$s-*" | awk '{print $1}'); do
      n=${inst#aiim@"$s"-}
      n=${n%.service}
      if [[ $n =~ ^[0-9]+$ ]] && ((n > REPLICAS[$s])); then
        ilog "stopping surplus $inst"
        systemctl disable --now "$inst" >/dev/null 2>&1 || true
      fi
    done
  done
}

# render_template SRC DEST sed-args...: a config template with @NAME@ placeholders. `s|…|…|`
# expressions apply to non-comment lines only (the templates' comments name the placeholders;
# a secret must not be copied into them).
render_template() {
  local src=$1 dest=$2 args=() a
  shift 2
  for a in "$@"; do
    if [[ $a == s\|* ]]; then args+=("/^[[:space:]]*#/!$a"); else args+=("$a"); fi
  done
  mkdir -p "$(dirname "$dest")"
  (umask 077 && sed "${args[@]}" "$src" >"$dest.tmp")
  mv "$dest.tmp" "$dest"
  if grep -v '^[[:space:]]*#' "$dest" | grep -q '@[A-Z_]*@'; then
    idie "$dest: unfilled placeholders: $(grep -v '^[[:space:]]*#' "$dest" | grep -o '@[A-Z_]*@' | sort -u | tr '\n' ' ')"
  fi
  ilog "rendered $dest"
}
