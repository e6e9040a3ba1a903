#!/usr/bin/env bash
# scripts/services.sh [--need-redis]
#
# Makes sure the backing services of the checkout backend answer at the
# addresses the app and the tests use, starting them when they do not:
#
#   PostgreSQL  DATABASE_URL       (default postgres://postgres@127.0.0.1:5432/checkout?sslmode=disable)
#               TEST_DATABASE_URL  (checked too when set; `make test` sets it)
#   RabbitMQ    AMQP_URL           (default amqp://guest:guest@127.0.0.1:5672/)
#   Redis       REDIS_URL          (default redis://127.0.0.1:6379/0; only with
#                                   --need-redis or when REDIS_URL is set)
#
# For each service that does not answer, and whose URL points at this machine:
#   1. a Docker engine answers (`docker info`) and compose is there:
#        docker compose up -d <service>, then wait until it is healthy;
#   2. else the system's packages are installed: start them
#        (pg_ctlcluster / service, rabbitmq-server -detached, redis-server);
#   3. else, as root (or with password-less sudo) on Debian/Ubuntu:
#        apt-get update (once) && apt-get install -y <package>, then 2.
# With --only-ha-tools it only installs what `make ha` runs (see ensure_ha_tools).
# With --need-tools it also installs, with apt when missing, the tools tests run:
#   promtool/prometheus (Debian package prometheus), pgbouncer, haproxy, patroni,
#   etcd-server and etcd-client for the self-healing stack's tests and, for the analytics report's
#   headless-browser test, chromium (Debian package chromium). Grafana Loki is not
#   packaged by Debian (its 'loki' package is an unrelated genetics program), so it
#   is not installed: the log shipping test builds VictoriaLogs, which takes Loki's
#   push protocol, from tools/victorialogs instead, and this script says so once.
# Then it waits for the service to accept connections, checks that PostgreSQL
# lets the URL's user in (fixing a fresh install's password-only TCP login when
# it can) and creates the URL's database when missing.
#
# Idempotent; prints nothing when everything already runs, one line per action
# taken, and exactly one line on stderr (exit 1) when something cannot be
# found or started. Never reads stdin.
set -euo pipefail
exec </dev/null

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

DEFAULT_DATABASE_URL='postgres://postgres@127.0.0.1:5432/checkout?sslmode=disable'
DEFAULT_AMQP_URL='amqp://guest:guest@127.0.0.1:5672/'
DEFAULT_REDIS_URL='redis://127.0.0.1:6379/0'

PG_TIMEOUT=${SERVICES_PG_TIMEOUT:-60}
RABBIT_TIMEOUT=${SERVICES_RABBITMQ_TIMEOUT:-120}
REDIS_TIMEOUT=${SERVICES_REDIS_TIMEOUT:-30}

need_redis=0
need_tools=0
need_ha=0
for arg in "$@"; do
	case $arg in
	--need-redis) need_redis=1 ;;
	--need-tools) need_tools=1 ;;
	--only-ha-tools) need_ha=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
		exit 0
		;;
	*)
		echo "services: unknown argument '$arg' (usage: scripts/services.sh [--need-redis])" >&2
		exit 2
		;;
	esac
done

LOGDIR= LOG=
logfile() { # logfile NAME: sets LOG to the path of a log file for a start attempt
	if [[ -z $LOGDIR ]]; then
		LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/checkout-services.XXXXXX")
	fi
	LOG=$LOGDIR/$1.log
}

hp() { if [[ $1 == *:* ]]; then printf '[%s]:%s' "$1" "$2"; else printf '%s:%s' "$1" "$2"; fi; }
say() { printf 'services: %s\n' "$*"; }
die() {
	printf 'services: %s\n' "$*" >&2
	# keep the logs only when the message points at them
	if [[ -n $LOGDIR && $* != *"$LOGDIR"* ]]; then rm -rf "$LOGDIR"; fi
	exit 1
}

have() { local p; p=$(type -P "$1" 2>/dev/null) && [[ -x $p ]]; }

# with_timeout SECONDS CMD... (runs without a limit where coreutils' timeout is missing)
with_timeout() {
	local t=$1
	shift
	if have timeout; then timeout "$t" "$@"; else "$@"; fi
}

# ---------------------------------------------------------------- privileges

is_root() { [[ $(id -u) -eq 0 ]]; }
SUDO_OK=
can_sudo() {
	if [[ -z $SUDO_OK ]]; then
		SUDO_OK=no
		if ! is_root && have sudo && sudo -n true >/dev/null 2>&1; then SUDO_OK=yes; fi
	fi
	[[ $SUDO_OK == yes ]]
}
can_admin() { is_root || can_sudo; }
# as_root CMD...: as root (directly, or through password-less sudo); otherwise
# tried as the current user, which fails with the command's own message
as_root() {
	if is_root; then "$@"; elif can_sudo; then sudo -n -- "$@"; else "$@"; fi
}
# as_postgres CMD...: run as the postgres OS user (local socket, peer auth)
as_postgres() {
	if is_root; then
		if have runuser; then
			(cd / && runuser -u postgres -- "$@")
		else
			(cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
		fi
	elif [[ $(id -un) == postgres ]]; then
		"$@"
	elif can_sudo; then
		(cd / && sudo -n -u postgres -- "$@")
	else
		return 1
	fi
}

# ---------------------------------------------------------------- URLs

# parse_url URL -> sets U_SCHEME U_USER U_PASS U_HOST U_PORT U_PATH U_QUERY
urldecode() { local s=${1//+/ }; printf '%b' "${s//%/\\x}"; }
parse_url() {
	local url=$1 rest authority userinfo hostport
	U_SCHEME= U_USER= U_PASS= U_HOST= U_PORT= U_PATH= U_QUERY=
	if [[ $url == *://* ]]; then
		U_SCHEME=${url%%://*}
		rest=${url#*://}
	else
		rest=$url
	fi
	if [[ $rest == *\?* ]]; then
		U_QUERY=${rest#*\?}
		rest=${rest%%\?*}
	fi
	authority=${rest%%/*}
	if [[ $rest == */* ]]; then U_PATH=$(urldecode "${rest#*/}"); fi
	hostport=$authority
	if [[ $authority == *@* ]]; then
		userinfo=${authority%@*}
		hostport=${authority##*@}
		U_USER=$(urldecode "${userinfo%%:*}")
		if [[ $userinfo == *:* ]]; then U_PASS=$(urldecode "${userinfo#*:}"); fi
	fi
	if [[ $hostport == \[* ]]; then # [v6]:port
		U_HOST=${hostport#\[}
		U_HOST=${U_HOST%%]*}
		if [[ $hostport == *]:* ]]; then U_PORT=${hostport##*]:}; fi
	else
		U_HOST=${hostport%%:*}
		if [[ $hostport == *:* ]]; then U_PORT=${hostport##*:}; fi
	fi
}

is_local_host() {
	case $1 in
	'' | localhost | localhost.localdomain | 127.* | ::1 | 0.0.0.0 | ::) return 0 ;;
	esac
	local h
	for h in "$(hostname 2>/dev/null || true)" "$(hostname -f 2>/dev/null || true)"; do
		[[ -n $h && $1 == "$h" ]] && return 0
	done
	return 1
}

# ---------------------------------------------------------------- probes

tcp_open() { # tcp_open HOST PORT
	with_timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}
pg_ready() { # pg_ready HOST PORT: the server answers the PostgreSQL protocol
	if have pg_isready; then
		pg_isready -q -h "$1" -p "$2" -t 3 >/dev/null 2>&1
	else
		tcp_open "$1" "$2"
	fi
}
amqp_ready() { # amqp_ready HOST PORT: a broker answers the AMQP 0-9-1 header
	with_timeout 8 bash -c '
		exec 3<>"/dev/tcp/$0/$1" || exit 1
		printf "AMQP\x00\x00\x09\x01" >&3
		IFS= read -r -t 5 -N 1 -d "" b <&3 || exit 1
		[[ $b == $'"'"'\x01'"'"' ]]' "$1" "$2" 2>/dev/null
}
redis_ready() { # redis_ready HOST PORT: a server answers PING (+PONG, or -NOAUTH etc.)
	with_timeout 6 bash -c '
		exec 3<>"/dev/tcp/$0/$1" || exit 1
		printf "PING\r\n" >&3
		IFS= read -r -t 4 l <&3 || exit 1
		[[ $l == [+-]* ]]' "$1" "$2" 2>/dev/null
}

# wait_until SECONDS CMD...: poll CMD once a second until it succeeds
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	while ! "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 1
	done
}

# ---------------------------------------------------------------- docker compose

COMPOSE=()
DOCKER_STATE=
docker_usable() {
	if [[ -z $DOCKER_STATE ]]; then
		DOCKER_STATE=no
		if [[ -f $ROOT/docker-compose.yml ]] && have docker &&
			with_timeout 15 docker info >/dev/null 2>&1; then
			if docker compose version >/dev/null 2>&1; then
				COMPOSE=(docker compose)
				DOCKER_STATE=yes
			elif have docker-compose; then
				COMPOSE=(docker-compose)
				DOCKER_STATE=yes
			fi
		fi
	fi
	[[ $DOCKER_STATE == yes ]]
}
compose() { "${COMPOSE[@]}" --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" "$@"; }
container_healthy() { # container_healthy SERVICE
	local id
	id=$(compose ps -q "$1" 2>/dev/null | head -n1)
	[[ -n $id ]] && [[ $(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null) == healthy ]]
}
# compose_start SERVICE NAME TIMEOUT PROBE HOST PORT [VAR=VALUE...]
compose_start() {
	local svc=$1 name=$2 timeout=$3 probe=$4 host=$5 port=$6 log
	shift 6
	logfile "$svc-compose"
	log=$LOG
	if ! env "$@" "${COMPOSE[@]}" --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" up -d "$svc" >"$log" 2>&1; then
		die "$name not reachable at $(hp "$host" "$port") and 'docker compose up -d $svc' failed; log: $log"
	fi
	if ! wait_until "$timeout" container_healthy "$svc" || ! wait_until 10 "$probe" "$host" "$port"; then
		die "$name container '$svc' did not become healthy within ${timeout}s at $(hp "$host" "$port"); see: docker compose logs $svc"
	fi
	say "started $name on $(hp "$host" "$port") (docker compose service $svc)"
}

# ---------------------------------------------------------------- apt

APT_UPDATED=
apt_install() { # apt_install PACKAGE... -> 0 when installed
	have apt-get || return 1
	can_admin || return 1
	local log
	logfile apt
	log=$LOG
	if [[ -z $APT_UPDATED ]]; then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 || return 1
		APT_UPDATED=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"$@" >>"$log" 2>&1 || return 1
	say "installed $* (apt-get)"
}

# ---------------------------------------------------------------- PostgreSQL

pg_installed() {
	local f
	have pg_ctlcluster && return 0
	for f in /usr/lib/postgresql/*/bin/postgres; do [[ -x $f ]] && return 0; done
	have postgres
}

pg_start_packages() { # pg_start_packages HOST PORT VAR
	local host=$1 port=$2 var=$3 log ver cluster='' line rc=0 what
	logfile postgresql
	log=$LOG
	if have pg_lsclusters && have pg_ctlcluster; then
		# the cluster configured for this port, else create one where none exist
		while read -r line; do
			set -- $line
			if [[ ${3:-} == "$port" ]]; then
				ver=$1 cluster=$2
				break
			fi
		done < <(pg_lsclusters -h 2>/dev/null || true)
		if [[ -z $cluster ]]; then
			if [[ -n $(pg_lsclusters -h 2>/dev/null || true) ]]; then
				die "PostgreSQL not reachable at $(hp "$host" "$port") and no local cluster is configured for port $port (see pg_lsclusters); start one there or set $var"
			fi
			ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1 || true)
			[[ -n $ver ]] || ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1 || true)
			[[ -n $ver ]] || die "PostgreSQL not reachable at $(hp "$host" "$port") and no installed server version found; install postgresql or set $var"
			cluster=main
			as_root pg_createcluster --port "$port" "$ver" main >>"$log" 2>&1 ||
				die "PostgreSQL not reachable at $(hp "$host" "$port") and 'pg_createcluster $ver main' failed; log: $log"
		fi
		as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start >>"$log" 2>&1 || rc=$?
		# 2 = already running (but maybe not on this address yet)
		if [[ $rc -ne 0 && $rc -ne 2 ]]; then
			die "PostgreSQL not reachable at $(hp "$host" "$port") and 'pg_ctlcluster $ver $cluster start' failed (exit $rc); log: $log"
		fi
		what="cluster $ver/$cluster"
	elif [[ $port != 5432 ]]; then
		die "PostgreSQL not reachable at $(hp "$host" "$port"); without pg_ctlcluster a local server is started on 5432 only, not $port; start one on $port or set $var"
	elif have service; then
		as_root service postgresql start >>"$log" 2>&1 ||
			die "PostgreSQL not reachable at $(hp "$host" "$port") and 'service postgresql start' failed; log: $log"
		what="service postgresql"
	elif have systemctl; then
		as_root systemctl start postgresql >>"$log" 2>&1 ||
			die "PostgreSQL not reachable at $(hp "$host" "$port") and 'systemctl start postgresql' failed; log: $log"
		what="systemctl postgresql"
	else
		die "PostgreSQL not reachable at $(hp "$host" "$port"); it is installed but neither pg_ctlcluster nor service is available to start it; start it or set $var"
	fi
	wait_until "$PG_TIMEOUT" pg_ready "$host" "$port" ||
		die "PostgreSQL ($what) started but not accepting connections at $(hp "$host" "$port") after ${PG_TIMEOUT}s; log: $log"
	say "started PostgreSQL on $(hp "$host" "$port") ($what)"
}

pg_ensure_running() { # pg_ensure_running HOST PORT VAR
	local host=$1 port=$2 var=$3
	pg_ready "$host" "$port" && return 0
	is_local_host "$host" ||
		die "PostgreSQL not reachable at $(hp "$host" "$port") (not this machine, so not started here); start it or set $var"
	if docker_usable; then
		compose_start postgres PostgreSQL "$PG_TIMEOUT" pg_ready "$host" "$port" "POSTGRES_PORT=$port"
		return 0
	fi
	if ! pg_installed; then
		apt_install postgresql ||
			die "PostgreSQL not reachable at $(hp "$host" "$port") and not installed; install postgresql or set $var"
		pg_ready "$host" "$port" && { say "started PostgreSQL on $(hp "$host" "$port") (package install)"; return 0; }
	fi
	pg_start_packages "$host" "$port" "$var"
}

sql_lit() { local s=${1//\'/\'\'}; printf "'%s'" "$s"; }
sql_ident() { local s=${1//\"/\"\"}; printf '"%s"' "$s"; }

# pg_admin_url: URL of the server's maintenance database "postgres" with the
# user, password and options of the parsed URL
pg_admin_url() {
	local url="postgresql://"
	[[ -n $U_USER ]] && url+=$(pg_urlenc "$U_USER")
	[[ -n $U_PASS ]] && url+=":$(pg_urlenc "$U_PASS")"
	[[ -n $U_USER || -n $U_PASS ]] && url+="@"
	if [[ $U_HOST == *:* ]]; then url+="[$U_HOST]"; else url+="$U_HOST"; fi
	url+=":$U_PORT/postgres"
	[[ -n $U_QUERY ]] && url+="?$U_QUERY"
	printf '%s' "$url"
}
pg_urlenc() {
	local s=$1 out='' c i
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case $c in
		[a-zA-Z0-9.~_-]) out+=$c ;;
		*) out+=$(printf '%%%02X' "'$c") ;;
		esac
	done
	printf '%s' "$out"
}
pg_psql() { # pg_psql ADMIN_URL SQL -> output on stdout, errors on stderr
	PGCONNECT_TIMEOUT=5 psql -X -w -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}
pg_local_admin() { # pg_local_admin PORT SQL: as the postgres OS user over the socket
	as_postgres psql -X -w -q -A -t -v ON_ERROR_STOP=1 -p "$1" -d postgres -c "$2"
}

# pg_fix_login USER HOST PORT VAR ERR: a fresh Debian install lets postgres in
# over the local socket only (peer) and asks for a password over TCP, while the
# role has none. Only in that case (local server, we are root or have sudo, the
# role has no password yet) give the role the URL's password or, when the URL
# has none, the password 'postgres' recorded in ~/.pgpass (read by psql and
# pgx). A role that does not exist is created (superuser, for local dev).
# Anything else is reported, never changed.
pg_fix_login() {
	local user=$1 host=$2 port=$3 var=$4 err=${5%%$'\n'*} haspw pw pgpass entry
	is_local_host "$host" && can_admin ||
		die "PostgreSQL at $(hp "$host" "$port") refused $user ($err); fix the credentials in $var"
	haspw=$(pg_local_admin "$port" "SELECT coalesce((SELECT (rolpassword IS NOT NULL)::text FROM pg_authid WHERE rolname = $(sql_lit "$user")), 'none')" 2>/dev/null) ||
		die "PostgreSQL at $(hp "$host" "$port") refused $user ($err) and the postgres OS user cannot reach it over the local socket to fix that; fix the credentials in $var"
	pw=${U_PASS:-postgres}
	case $haspw in
	none)
		pg_local_admin "$port" "CREATE ROLE $(sql_ident "$user") LOGIN SUPERUSER PASSWORD $(sql_lit "$pw")" >/dev/null 2>&1 ||
			die "PostgreSQL at $(hp "$host" "$port") has no role $user and creating it failed; create it or fix $var"
		say "PostgreSQL on $(hp "$host" "$port"): created superuser role $user (for local development)"
		;;
	false)
		pg_local_admin "$port" "ALTER ROLE $(sql_ident "$user") PASSWORD $(sql_lit "$pw")" >/dev/null 2>&1 ||
			die "PostgreSQL at $(hp "$host" "$port") asks $user for a password and setting one failed; fix the credentials in $var"
		;;
	*)
		if [[ -n $U_PASS ]]; then
			die "PostgreSQL at $(hp "$host" "$port") refused $user with the password in $var ($err); fix the password in $var"
		fi
		die "PostgreSQL at $(hp "$host" "$port") asks $user for a password and $var has none; put it in $var (postgres://$user:PASSWORD@$(hp "$host" "$port")/...) or in ~/.pgpass"
		;;
	esac
	if [[ -z $U_PASS ]]; then
		pgpass=${PGPASSFILE:-${HOME:-/root}/.pgpass}
		entry="${host//:/\\:}:$port:*:${user//:/\\:}:$pw"
		if ! grep -qxF -- "$entry" "$pgpass" 2>/dev/null; then
			(umask 077 && printf '%s\n' "$entry" >>"$pgpass")
			chmod 600 "$pgpass"
		fi
		say "PostgreSQL on $(hp "$host" "$port") required a password for $user over TCP: set it to '$pw' and added it to $pgpass (read by psql and pgx)"
	elif [[ $haspw == false ]]; then
		say "PostgreSQL on $(hp "$host" "$port") required a password for $user over TCP: set it to the one in $var"
	fi
}

# pg_ensure_db URL VAR: the URL's user can log in and its database exists
pg_ensure_db() {
	local url=$1 var=$2 admin err db user out
	db=$U_PATH
	db=${db%%/*}
	user=${U_USER:-$(id -un)}
	if ! have psql; then
		if [[ $DOCKER_STATE == yes ]] && [[ -n $(compose ps -q postgres 2>/dev/null) ]]; then
			[[ -z $db ]] || compose exec -T postgres sh -c \
				'psql -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '"$(sql_lit "$db")"'" | grep -q 1 || createdb -U postgres "$1"' _ "$db" >/dev/null 2>&1 ||
				die "could not create database $db in the postgres container; create it or fix $var"
			return 0
		fi
		if is_local_host "$U_HOST" && apt_install postgresql-client; then :; else
			echo "services: warning: psql not found; cannot check that database '${db:-?}' exists at $(hp "$U_HOST" "$U_PORT") (install postgresql-client)" >&2
			return 0
		fi
	fi
	admin=$(pg_admin_url)
	if ! err=$(pg_psql "$admin" 'SELECT 1' 2>&1 >/dev/null); then
		case $err in
		*"password authentication failed"* | *"no password supplied"* | *"role"*"does not exist"*)
			pg_fix_login "$user" "$U_HOST" "$U_PORT" "$var" "$err"
			err=$(pg_psql "$admin" 'SELECT 1' 2>&1 >/dev/null) ||
				die "PostgreSQL at $(hp "$U_HOST" "$U_PORT") still refuses $user: ${err%%$'\n'*}; fix the credentials in $var"
			;;
		*) die "PostgreSQL at $(hp "$U_HOST" "$U_PORT"): cannot log in as $user: ${err%%$'\n'*}; fix $var" ;;
		esac
	fi
	[[ -n $db && $db != postgres ]] || return 0
	out=$(pg_psql "$admin" "SELECT 1 FROM pg_database WHERE datname = $(sql_lit "$db")" 2>&1) ||
		die "PostgreSQL at $(hp "$U_HOST" "$U_PORT"): cannot list databases: ${out%%$'\n'*}"
	[[ $out == 1 ]] && return 0
	if ! err=$(pg_psql "$admin" "CREATE DATABASE $(sql_ident "$db")" 2>&1 >/dev/null); then
		if is_local_host "$U_HOST" && pg_local_admin "$U_PORT" "CREATE DATABASE $(sql_ident "$db") OWNER $(sql_ident "$user")" >/dev/null 2>&1; then :; else
			die "PostgreSQL at $(hp "$U_HOST" "$U_PORT"): cannot create database $db as $user: ${err%%$'\n'*}; create it or fix $var"
		fi
	fi
	say "created database $db on $(hp "$U_HOST" "$U_PORT")"
}

ensure_postgres() {
	local var url seen=' '
	for var in DATABASE_URL TEST_DATABASE_URL; do
		url=${!var:-}
		if [[ -z $url ]]; then
			[[ $var == DATABASE_URL ]] || continue
			url=$DEFAULT_DATABASE_URL
		fi
		parse_url "$url"
		case $U_SCHEME in postgres | postgresql) ;; *)
			die "$var is not a postgres:// URL ('$url'); set it like $DEFAULT_DATABASE_URL" ;;
		esac
		U_HOST=${U_HOST:-127.0.0.1}
		U_PORT=${U_PORT:-5432}
		if [[ $seen != *" $(hp "$U_HOST" "$U_PORT") "* ]]; then
			pg_ensure_running "$U_HOST" "$U_PORT" "$var"
			seen+="$(hp "$U_HOST" "$U_PORT") "
		fi
		pg_ensure_db "$url" "$var"
	done
}

# ---------------------------------------------------------------- RabbitMQ

rabbit_await_startup() { # best effort: the AMQP port already answers
	local prefix=()
	have rabbitmqctl && can_admin || return 0
	is_root || prefix=(sudo -n --)
	with_timeout "$1" "${prefix[@]}" rabbitmqctl -q await_startup >/dev/null 2>&1 || true
}

ensure_rabbitmq() {
	local url=${AMQP_URL:-$DEFAULT_AMQP_URL} host port log rc=0 probe
	parse_url "$url"
	case $U_SCHEME in amqp | amqps) ;; *)
		die "AMQP_URL is not an amqp:// URL ('$url'); set it like $DEFAULT_AMQP_URL" ;;
	esac
	host=${U_HOST:-127.0.0.1}
	if [[ -n $U_PORT ]]; then port=$U_PORT; elif [[ $U_SCHEME == amqps ]]; then port=5671; else port=5672; fi
	probe=amqp_ready
	[[ $U_SCHEME == amqps ]] && probe=tcp_open # TLS: no plain AMQP header
	"$probe" "$host" "$port" && return 0
	is_local_host "$host" ||
		die "RabbitMQ not reachable at $(hp "$host" "$port") (not this machine, so not started here); start it or set AMQP_URL"
	if docker_usable; then
		compose_start rabbitmq RabbitMQ "$RABBIT_TIMEOUT" "$probe" "$host" "$port" "RABBITMQ_PORT=$port"
		return 0
	fi
	if [[ $port != "${RABBITMQ_NODE_PORT:-5672}" ]]; then
		die "RabbitMQ not reachable at $(hp "$host" "$port"); a local rabbitmq-server would listen on ${RABBITMQ_NODE_PORT:-5672}, not $port, so none is started; start a broker on $port or set AMQP_URL"
	fi
	if ! have rabbitmq-server; then
		apt_install rabbitmq-server ||
			die "RabbitMQ not reachable at $(hp "$host" "$port") and not installed; install rabbitmq-server or set AMQP_URL"
		if "$probe" "$host" "$port"; then
			say "started RabbitMQ on $(hp "$host" "$port") (package install)"
			return 0
		fi
	fi
	logfile rabbitmq
	log=$LOG
	as_root rabbitmq-server -detached >>"$log" 2>&1 || rc=$?
	[[ $rc -eq 0 ]] ||
		die "RabbitMQ not reachable at $(hp "$host" "$port") and 'rabbitmq-server -detached' failed (exit $rc); log: $log"
	if ! wait_until "$RABBIT_TIMEOUT" "$probe" "$host" "$port"; then
		die "RabbitMQ started (rabbitmq-server -detached) but not accepting connections at $(hp "$host" "$port") after ${RABBIT_TIMEOUT}s; log: $log and /var/log/rabbitmq/"
	fi
	rabbit_await_startup 60
	say "started RabbitMQ on $(hp "$host" "$port") (rabbitmq-server -detached)"
}

# ---------------------------------------------------------------- Redis

ensure_redis() {
	local url=${REDIS_URL:-$DEFAULT_REDIS_URL} host port log bind dir args
	parse_url "$url"
	case $U_SCHEME in redis | rediss) ;; *)
		die "REDIS_URL is not a redis:// URL ('$url'); set it like $DEFAULT_REDIS_URL" ;;
	esac
	host=${U_HOST:-127.0.0.1}
	port=${U_PORT:-6379}
	redis_ready "$host" "$port" && return 0
	is_local_host "$host" ||
		die "Redis not reachable at $(hp "$host" "$port") (not this machine, so not started here); start it or set REDIS_URL"
	if docker_usable; then
		compose_start redis Redis "$REDIS_TIMEOUT" redis_ready "$host" "$port" "REDIS_PORT=$port"
		return 0
	fi
	if ! have redis-server; then
		apt_install redis-server ||
			die "Redis not reachable at $(hp "$host" "$port") and not installed; install redis-server or set REDIS_URL"
		if redis_ready "$host" "$port"; then
			say "started Redis on $(hp "$host" "$port") (package install)"
			return 0
		fi
	fi
	case $host in ::1) bind=::1 ;; *) bind=127.0.0.1 ;; esac
	dir=${TMPDIR:-/tmp}
	logfile redis
	log=$LOG
	args=(--daemonize yes --bind "$bind" --port "$port" --save "" --appendonly no
		--dir "$dir" --logfile "$dir/checkout-redis-$port.log")
	[[ -n $U_PASS ]] && args+=(--requirepass "$U_PASS")
	redis-server "${args[@]}" >>"$log" 2>&1 ||
		die "Redis not reachable at $(hp "$host" "$port") and 'redis-server --daemonize yes --port $port' failed; log: $log"
	wait_until "$REDIS_TIMEOUT" redis_ready "$host" "$port" ||
		die "Redis started but not answering at $(hp "$host" "$port") after ${REDIS_TIMEOUT}s; log: $dir/checkout-redis-$port.log"
	say "started Redis on $(hp "$host" "$port") (redis-server --daemonize yes)"
}

# The deploy/ tests run the real promtool and prometheus (Debian's prometheus package).
ensure_promtool() {
	have promtool && have prometheus && return 0
	apt_install --no-install-recommends prometheus ||
		die "promtool/prometheus not on PATH and not installable here; install Debian's 'prometheus' package"
	have promtool && have prometheus ||
		die "the prometheus package is installed but promtool/prometheus are not on PATH"
	say "installed promtool and prometheus (Debian package prometheus)"
}

# Analytics and logs: the report test's browser, and what stands in for Loki.
ensure_chromium() {
	have chromium || have chromium-browser || have google-chrome && return 0
	apt_install --no-install-recommends chromium ||
		die "chromium not on PATH and not installable here; install Debian's 'chromium' package (the report's browser test needs it)"
	have chromium || die "the chromium package is installed but chromium is not on PATH"
	say "installed chromium (Debian package chromium)"
}

# The self-healing stack (make ha, make chaos) and its tests run Debian's PgBouncer,
# HAProxy, Patroni and etcd on ports of their own; the packages' own services are not
# started (no systemd here; their units stay disabled).
ensure_ha_tools() {
	local missing=() cmd pkg cmd_pkg
	for cmd_pkg in pgbouncer:pgbouncer haproxy:haproxy patroni:patroni etcd:etcd-server etcdctl:etcd-client; do
		cmd=${cmd_pkg%%:*} pkg=${cmd_pkg#*:}
		have "$cmd" || missing+=("$pkg")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	apt_install --no-install-recommends "${missing[@]}" ||
		die "not installable here: ${missing[*]} (Debian packages; the PgBouncer, HAProxy and Patroni tests and make ha need them)"
	for cmd_pkg in pgbouncer:pgbouncer haproxy:haproxy patroni:patroni etcd:etcd-server etcdctl:etcd-client; do
		have "${cmd_pkg%%:*}" || die "the ${cmd_pkg#*:} package is installed but ${cmd_pkg%%:*} is not on PATH"
	done
	say "installed ${missing[*]} (Debian packages)"
}

note_loki() {
	# Grafana Loki answers `loki -version` with "loki, version ..."; Debian's loki does not.
	if have loki && loki -version 2>&1 | grep -q '^loki, version'; then return 0; fi
	say "Grafana Loki cannot be installed here: Debian has no package of it (Debian's 'loki' is a genetics program); the log shipping test runs VictoriaLogs from tools/victorialogs instead"
}

# ---------------------------------------------------------------- main

if [[ $need_ha -eq 1 ]]; then # make ha: the stack starts its own servers
	ensure_ha_tools
	exit 0
fi
ensure_postgres
ensure_rabbitmq
if [[ $need_redis -eq 1 || -n ${REDIS_URL:-} ]]; then
	ensure_redis
fi
if [[ $need_tools -eq 1 ]]; then
	ensure_promtool
	ensure_chromium # the analytics report test
	ensure_ha_tools # PgBouncer, HAProxy, Patroni and etcd: the self-healing stack's tests
	note_loki       # the log shipping test
fi
# keep the logs of failed attempts (die exits before this), drop the rest
if [[ -n $LOGDIR ]]; then rm -rf "$LOGDIR"; fi
