#!/usr/bin/env bash
# The local self-healing stack without Docker (docs/operations.md "Self-healing"):
#
#   scripts/ha.sh up       install what is missing (Patroni, etcd, PgBouncer, HAProxy:
#                          Debian packages), build bin/checkout, start three etcd members,
#                          three PostgreSQL nodes under Patroni, HAProxy, PgBouncer, a
#                          three-node RabbitMQ cluster and three service instances under
#                          .ha/, print their URLs
#   scripts/ha.sh status   each process: pid, role, readiness
#   scripts/ha.sh down     stop all of it by process id (files stay in .ha/)
#
# HA_DIR chooses the directory (default .ha), HA_INSTANCES the number of instances.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-}"
dir="${HA_DIR:-.ha}"
case "$cmd" in
up)
	scripts/services.sh --only-ha-tools # Patroni, etcd, PgBouncer, HAProxy (Debian packages)
	go build -o bin/checkout ./cmd/checkout
	exec go run ./cmd/ha up -dir "$dir" -bin bin/checkout -instances "${HA_INSTANCES:-3}"
	;;
status | down)
	exec go run ./cmd/ha "$cmd" -dir "$dir"
	;;
*)
	echo "usage: scripts/ha.sh up|status|down" >&2
	exit 2
	;;
esac
