# Checkout backend — developer entry points (GNU make).
#
#   make run       start PostgreSQL/RabbitMQ if needed, migrate, seed, serve
#   make test      the whole test suite (the one command CI runs)
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

# http://localhost:8080/ for HTTP_ADDR=:8080, http://HOST:PORT/ otherwise
PLAYGROUND_URL = http://$(if $(filter :%,$(HTTP_ADDR)),localhost$(HTTP_ADDR),$(HTTP_ADDR))/

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
	@echo
	$(CHECKOUT) serve

.PHONY: token
token: ## print a dev JWT with the admin role
	@$(CHECKOUT) token --sub dev-admin --roles admin

# The tests create their own schema/database under TEST_DATABASE_URL and
# start stripe-mock and toxiproxy themselves (go.mod tool directives).
.PHONY: test
test: export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
test: export REDIS_URL ?= $(DEFAULT_REDIS_URL)
test: ## run every test (starts PostgreSQL, RabbitMQ and Redis if needed)
	@$(SERVICES) --need-redis --need-tools
	@log=$$(mktemp -t checkout-test-log.XXXXXX); rc=0; \
	echo "$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $(PKGS)"; \
	CHECKOUT_TEST_LOG=$$log $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $(PKGS) || rc=$$?; \
	$(GO) run ./cmd/logscan $$log || rc=1; \
	rm -f $$log; exit $$rc

.PHONY: bench
bench: ## run the load benchmark (cmd/bench)
	@$(SERVICES)
	$(GO) run ./cmd/bench $(BENCHFLAGS)

.PHONY: soak
soak: ## run the soak test (cmd/bench -soak)
	@$(SERVICES)
	$(GO) run ./cmd/bench -soak $(BENCHFLAGS)

# --- high availability (issue 13): local HA stack and chaos run, no Docker ---
.PHONY: ha ha-status ha-down chaos
ha: ## start the local HA stack: PG primary + sync standby, 3 RabbitMQ nodes, 2 instances (.ha/)
	scripts/ha.sh up

ha-status: ## show the local HA stack's processes
	scripts/ha.sh status

ha-down: ## stop the local HA stack by process id
	scripts/ha.sh down

chaos: ## kill and cut parts of a private HA stack under load; print the invariants per fault
	$(GO) run ./cmd/chaos $(CHAOSFLAGS)
# --- end high availability ---

.PHONY: generate
generate: ## regenerate code (gqlgen etc.)
	$(GO) generate ./...

.PHONY: lint
lint: ## gofmt check and go vet
	@gofiles="$$(git ls-files --cached --others --exclude-standard -- '*.go')"; \
	bad="$$(if [[ -n "$$gofiles" ]]; then gofmt -l $$gofiles; fi)"; \
	if [[ -n "$$bad" ]]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...

.PHONY: build
build: ## build bin/checkout
	$(GO) build -o $(BIN) ./cmd/checkout

.PHONY: docker-config
docker-config: ## validate docker-compose.yml
	$(COMPOSE) config -q

.PHONY: clean
clean: ## remove build output
	rm -rf bin coverage.out coverage.html
