# Checkout backend — developer entry points (GNU make).
#
#   make run       start PostgreSQL/RabbitMQ if needed, migrate, seed, serve
#                  (make run TLS=1: the same over HTTPS with development certificates)
#   make test      the whole test suite (the one command CI runs)
#   make test-fast the fast tests only (go test -short), for the edit-test loop
#
# Every setting below can be overridden from the environment or the command
# line, e.g. `make run HTTP_ADDR=:9090`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
COMPOSE  ?= docker compose
SERVICES ?= scripts/services.sh
CHECKOUT ?= $(GO) run ./cmd/checkout
BIN      ?= bin/checkout

export HTTP_ADDR         ?= :8080
export DATABASE_URL      ?= postgres://postgres@127.0.0.1:5432/checkout?sslmode=disable
export AMQP_URL          ?= amqp://guest:guest@127.0.0.1:5672/
export APP_ENV           ?= development
export PAYMENT_PROVIDER  ?= sandbox
# REDIS_URL is optional for the app: set it to use Redis (`make run` then
# starts Redis too). The tests always get one, see `test` below.
DEFAULT_REDIS_URL        := redis://127.0.0.1:6379/0

TEST_TIMEOUT ?= 25m
TESTFLAGS    ?=
PKGS         ?= ./...
# gotestsum (pinned in go.mod) runs go test -json and prints each package with its
# time; tests slower than SLOW_TEST are listed after the run.
GOTESTSUM    ?= $(GO) tool gotestsum
SLOW_TEST    ?= 5s

# http://localhost:8080/ for HTTP_ADDR=:8080, http://HOST:PORT/ otherwise
PLAYGROUND_URL = http://$(if $(filter :%,$(HTTP_ADDR)),localhost$(HTTP_ADDR),$(HTTP_ADDR))/

# TLS:
# `make run TLS=1` serves HTTPS (HTTP/2, wss) with the development CA and
# certificates of `checkout certs dev`, made once in TLS_DIR and kept: client
# certificates are asked for and verified when given (TLS_CLIENT_AUTH=optional,
# so a browser still opens the playground), and the partner certificate
# authenticates the development partner. PostgreSQL, RabbitMQ and Redis stay
# plain (docs/security.md tells how to point the service at TLS servers).
TLS     ?=
TLS_DIR ?= .dev/tls
ifeq ($(TLS),1)
PLAYGROUND_URL = https://$(if $(filter :%,$(HTTP_ADDR)),localhost$(HTTP_ADDR),$(HTTP_ADDR))/
TLS_ENV        = eval "$$($(CHECKOUT) certs dev --dir $(TLS_DIR))" &&
endif

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: services
services: ## start PostgreSQL and RabbitMQ (and Redis when REDIS_URL is set) if not running
	@$(SERVICES)

.PHONY: run
run: ## start services, migrate, seed, then serve the API
	@$(SERVICES)
	$(CHECKOUT) migrate
	$(CHECKOUT) seed
	@echo
	@echo "  GraphQL playground: $(PLAYGROUND_URL)   (API: $(PLAYGROUND_URL)graphql)"
	@echo "  dev admin token:    make token   (or: $(CHECKOUT) token --sub dev-admin --roles admin)"
	@echo "                      send it as   Authorization: Bearer <token>"
	@$(if $(TLS_ENV),echo "  a partner by its certificate: curl --cacert $(TLS_DIR)/ca.crt --cert $(TLS_DIR)/partner.crt --key $(TLS_DIR)/partner.key $(PLAYGROUND_URL)graphql -H 'content-type: application/json' -d '{\"query\":\"{ __typename }\"}'",true)
	@echo
	$(TLS_ENV) $(CHECKOUT) serve

.PHONY: token
token: ## print a dev JWT with the admin role
	@$(CHECKOUT) token --sub dev-admin --roles admin

# The tests create their own schema/database under TEST_DATABASE_URL and
# start stripe-mock and toxiproxy themselves (go.mod tool directives).
# run_tests runs $(PKGS) with the extra go test flags $(1) and gotestsum flags $(2):
# gotestsum prints one line per package with its time and a summary, then the tests
# slower than $(SLOW_TEST) are listed, and cmd/logscan checks the log of the whole run
# for card numbers, tokens and secrets. The exit status is the tests' (or logscan's).
# go test's own vet pass is off (-vet=off): `make lint` runs the whole of go vet, and CI
# runs it first; on a fresh machine that pass cost every package an analysis again.
define run_tests
	@log=$$(mktemp -t checkout-test-log.XXXXXX); json=$$(mktemp -t checkout-test-json.XXXXXX); rc=0; \
	echo "$(GO) test -count=1 -vet=off -timeout $(TEST_TIMEOUT) $(1) $(TESTFLAGS) $(PKGS)"; \
	CHECKOUT_TEST_LOG=$$log $(GOTESTSUM) --format pkgname --format-icons text --format-hide-empty-pkg $(2) --jsonfile $$json -- \
		-count=1 -vet=off -timeout $(TEST_TIMEOUT) $(1) $(TESTFLAGS) $(PKGS) || rc=$$?; \
	echo "Tests slower than $(SLOW_TEST):"; \
	$(GOTESTSUM) tool slowest --jsonfile $$json --threshold $(SLOW_TEST) || true; \
	$(GO) run ./cmd/logscan $$log || rc=1; \
	rm -f $$log $$json; exit $$rc
endef

.PHONY: test
test: export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
test: export REDIS_URL ?= $(DEFAULT_REDIS_URL)
test: ## run every test (starts PostgreSQL, RabbitMQ and Redis if needed)
	@$(SERVICES) --need-redis
	@# On a fresh machine the tools some tests run (promtool, prometheus, chromium) are
	@# installed, and gotestsum and the service binary are built, while the modules the
	@# tests need download. (The binary built here is the one the tests run: see
	@# testutil.BuildCheckout.)
	@log=$$(mktemp -t checkout-tools.XXXXXX); rc=0; \
	$(SERVICES) --need-redis --need-tools >$$log 2>&1 & pid=$$!; \
	{ $(GO) tool -n gotestsum && $(GO) tool -n github.com/checkout-backend/checkout/cmd/checkout; } >/dev/null & tpid=$$!; \
	$(GO) list -deps -test $(PKGS) >/dev/null || rc=$$?; \
	wait $$pid || rc=$$?; wait $$tpid || rc=$$?; cat $$log; rm -f $$log; exit $$rc
	$(call run_tests,)

.PHONY: test-fast
test-fast: export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
test-fast: export REDIS_URL ?= $(DEFAULT_REDIS_URL)
test-fast: ## the fast tests only: go test -short, slow tests skip themselves (testutil.Slow)
	@$(SERVICES) --need-redis
	$(call run_tests,-short,--hide-summary=skipped)

.PHONY: bench
bench: ## run the load benchmark (cmd/bench)
	@$(SERVICES)
	$(GO) run ./cmd/bench $(BENCHFLAGS)

.PHONY: soak
soak: ## run the soak test (cmd/bench -soak)
	@$(SERVICES)
	$(GO) run ./cmd/bench -soak $(BENCHFLAGS)

# The storefront starter (storefront/): Vite's dev server against the API of make run.
.PHONY: storefront storefront-build
storefront: ## serve the storefront starter against make run's API (started too when nothing answers); prints its URL
	@scripts/storefront.sh serve

storefront-build: ## the storefront's production build and its trusted-documents manifest (storefront/dist)
	scripts/storefront.sh build

# High availability: a local HA stack and the chaos run, no Docker.
.PHONY: ha ha-status ha-down chaos
ha: ## start the self-healing stack: etcd x3, Patroni x3, HAProxy, PgBouncer, RabbitMQ x3, 3 instances (.ha/)
	scripts/ha.sh up

ha-status: ## show the local HA stack's processes
	scripts/ha.sh status

ha-down: ## stop the local HA stack by process id
	scripts/ha.sh down

.PHONY: regions regions-chaos
regions: build ## two regions on this machine (PostgreSQL, RabbitMQ with shovels, an instance each; links through toxiproxy); Ctrl-C stops them
	$(GO) run ./cmd/regions up -bin $(BIN) $(REGIONSFLAGS)

regions-chaos: build ## two regions (each under Patroni) under load: WAN latency, a partition, a PostgreSQL leader killed, a broker restarted; heal, drain, check the escrow invariants
	@scripts/services.sh --only-ha-tools # Patroni and etcd (Debian packages), said in one line when missing
	$(GO) run ./cmd/regions chaos -bin $(BIN) $(REGIONSFLAGS)

chaos: ## kill and cut parts of a private HA stack under load; print the invariants per fault
	$(GO) run ./cmd/chaos $(CHAOSFLAGS)

.PHONY: generate
generate: ## regenerate code (gqlgen etc.)
	$(GO) generate ./...

# lint: gofmt, go vet, staticcheck (pinned in go.mod: go tool staticcheck; its default
# checks, zero findings) and the layer rules (internal/layers: the package map's arrows,
# on direct imports and dependency closures). CI runs it before the tests.
.PHONY: lint
lint: ## gofmt, go vet, staticcheck, the layer rules (internal/layers), the storefront's generated types and tsc
	@gofiles="$$(git ls-files --cached --others --exclude-standard -- '*.go')"; \
	bad="$$(if [[ -n "$$gofiles" ]]; then gofmt -l $$gofiles; fi)"; \
	if [[ -n "$$bad" ]]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) test -count=1 ./internal/layers/
	scripts/storefront.sh lint

.PHONY: build
build: ## build bin/checkout
	$(GO) build -o $(BIN) ./cmd/checkout

.PHONY: docker-config
docker-config: ## validate docker-compose.yml
	$(COMPOSE) config -q

.PHONY: clean
clean: ## remove build output
	rm -rf bin coverage.out coverage.html
