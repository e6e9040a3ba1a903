#!/usr/bin/env bash
# scripts/storefront.sh deps|build|lint|dev|serve
#
# The storefront starter (storefront/) from the repository's side:
#   deps   npm ci, unless node_modules already matches package-lock.json
#   build  deps, then the production build (trusted-documents manifest, types checked,
#          vite build, the bundle's gzipped size against its 150 KB budget):
#          storefront/dist and storefront/dist/persisted-query-manifest.json
#   lint   deps, then the generated types made again from schema/ and the operations,
#          which must leave storefront/src/gql unchanged, and tsc --noEmit
#   dev    deps, then the Vite dev server on STOREFRONT_ADDR (127.0.0.1:5173), its
#          /graphql (HTTP and WebSocket) and /dev proxied to CHECKOUT_API
#          (http://127.0.0.1:8080, what `make run` serves)
#   serve  dev, and when nothing answers at CHECKOUT_API's /healthz, `make run` first,
#          in the background (its log in .dev/api.log), stopped when the dev server stops
# Says in one line on stderr (exit 1) when Node.js or npm is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT/storefront"

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
	echo "storefront: Node.js 20.19 or later and npm are missing (https://nodejs.org, or NodeSource's packages for Debian)" >&2
	exit 1
fi
# Vite 8 needs Node.js 20.19 or later (Debian 12's own nodejs package is 18).
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
	echo "storefront: Node.js $(node --version) is too old: Vite 8 needs 20.19 or later (https://nodejs.org)" >&2
	exit 1
fi

deps() {
	# npm ci writes node_modules/.package-lock.json; when it holds every package of the
	# lock file at its version (optional ones, other platforms' binaries, aside) the
	# install is current and npm ci (which deletes node_modules first) is skipped.
	if [[ -f node_modules/.package-lock.json ]] && node -e '
		const a = require("./package-lock.json").packages, b = require("./node_modules/.package-lock.json").packages;
		for (const k of Object.keys(a)) if (k && !a[k].optional && (!b[k] || b[k].version !== a[k].version)) process.exit(1);' 2>/dev/null; then
		return
	fi
	npm ci --no-audit --no-fund --loglevel=error
}

case "${1:-}" in
deps) deps ;;
build) deps; npm run --silent build ;;
lint)
	deps
	npm run --silent codegen -- --silent
	if ! git -C "$ROOT" diff --quiet -- storefront/src/gql || [[ -n "$(git -C "$ROOT" ls-files --others --exclude-standard -- storefront/src/gql)" ]]; then
		echo "storefront: src/gql is stale: run (cd storefront && npm run codegen) and commit it" >&2
		git -C "$ROOT" status --short -- storefront/src/gql >&2
		exit 1
	fi
	npx --no-install tsc --noEmit && npx --no-install tsc --noEmit -p tsconfig.node.json
	;;
serve)
	export CHECKOUT_API=${CHECKOUT_API:-http://127.0.0.1:8080}
	if ! curl -fs -o /dev/null --max-time 2 "$CHECKOUT_API/healthz"; then
		mkdir -p "$ROOT/.dev"
		echo "storefront: nothing answers at $CHECKOUT_API; starting make run (log: .dev/api.log)"
		setsid make -C "$ROOT" run HTTP_ADDR="${CHECKOUT_API#http://}" >"$ROOT/.dev/api.log" 2>&1 &
		api=$!
		trap 'kill -- -$api 2>/dev/null || true' EXIT INT TERM
		for _ in $(seq 1 180); do
			curl -fs -o /dev/null --max-time 2 "$CHECKOUT_API/healthz" && break
			kill -0 "$api" 2>/dev/null || { echo "storefront: make run failed; see .dev/api.log" >&2; tail -5 "$ROOT/.dev/api.log" >&2; exit 1; }
			sleep 1
		done
	fi
	deps
	addr=${STOREFRONT_ADDR:-127.0.0.1:5173}
	echo
	echo "  storefront: http://$addr/   (API: $CHECKOUT_API; sign in with any name, pay with the sandbox's test cards)"
	echo
	npx --no-install vite --host "${addr%:*}" --port "${addr##*:}" --strictPort
	;;
dev)
	deps
	addr=${STOREFRONT_ADDR:-127.0.0.1:5173}
	export CHECKOUT_API=${CHECKOUT_API:-http://127.0.0.1:8080}
	exec npx --no-install vite --host "${addr%:*}" --port "${addr##*:}" --strictPort
	;;
*) echo "usage: scripts/storefront.sh deps|build|lint|dev|serve" >&2; exit 2 ;;
esac
