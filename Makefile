# erpsync — every target does its own set-up on a fresh machine.
#   make demo    the local stack end to end, with signed webhooks; prints what happened
#   make up      the local stack running until Ctrl-C, to try by hand (README "Try it by hand")
#   make test    unit tests + end-to-end tests on moto and a real Tryton
#   make lint    rustfmt, clippy, config check, template lint
#   make build   release Lambda packages for arm64 (cargo lambda)

SHELL := /bin/bash
STACK := .stack
VENV := $(STACK)/venv
TRYTON_TEMPLATE := $(STACK)/tryton-template
CARGO_FLAGS ?= -j2
TEST_THREADS ?= 4
ERPSYNC := target/debug/erpsync

.PHONY: setup demo up test lint build bench chaos fuzz money clean-stack

setup: $(VENV)/.installed $(TRYTON_TEMPLATE)/erpsync.sqlite

$(VENV)/.installed: tools/erpsync/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/erpsync/requirements.txt
	touch $@

$(TRYTON_TEMPLATE)/erpsync.sqlite: $(VENV)/.installed tools/erpsync/tryton/seed.py tools/erpsync/tryton/build-template.sh
	rm -rf $(TRYTON_TEMPLATE)
	tools/erpsync/tryton/build-template.sh $(VENV) $(TRYTON_TEMPLATE)

$(ERPSYNC): FORCE
	cargo build $(CARGO_FLAGS) -p erpsync -p shop-webhook -p order-sync -p stock-sync -p price-sync -p shipment-sync -p courier-webhook -p return-sync -p reconcile

FORCE:

demo: setup $(ERPSYNC)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(ERPSYNC) demo

up: setup $(ERPSYNC)
	$(ERPSYNC) stack up

test: setup $(ERPSYNC)
	cargo build $(CARGO_FLAGS) --workspace --all-targets
	# The tests' own status is the target's: the timing and the count are printed either way.
	set -o pipefail; start=$$(date +%s); \
	  $(ERPSYNC) stack run -- cargo test $(CARGO_FLAGS) --workspace -- --test-threads $(TEST_THREADS) 2>&1 | tee $(STACK)/test.log; \
	  status=$$?; \
	  echo "tests (stack up, run, down) took $$(( $$(date +%s) - start ))s"; \
	  awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "%d passed, %d failed\n", passed, failed }' $(STACK)/test.log; \
	  exit $$status

lint: $(VENV)/.installed
	cargo fmt --all -- --check
	cargo clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings
	cargo run $(CARGO_FLAGS) -q -p erpsync -- mapping check config/erpsync.example.toml
	cargo build $(CARGO_FLAGS) -q -p erpsync
	infra/lint/lint-template.sh infra/template.yaml

# N orders through the local stack under faults; asserts from the ERP that none was lost or
# duplicated and prints a summary. CI runs 500; the full run is CHAOS_ORDERS=5000.
CHAOS_ORDERS ?= 500
# storm: short faults (duplicates, reordering, poison, 5xx, timeouts, killed invocations); outage:
# the ERP gone long enough to spend every receive, and same-second versions (issue 15).
CHAOS_SCENARIO ?= storm
chaos: setup $(ERPSYNC)
	cargo build $(CARGO_FLAGS) -p erpsync-e2e --tests
	CHAOS_ORDERS=$(CHAOS_ORDERS) CHAOS_SCENARIO=$(CHAOS_SCENARIO) $(ERPSYNC) stack run -- cargo test $(CARGO_FLAGS) -p erpsync-e2e --test e2e -- --ignored --nocapture --exact chaos::chaos

# The money corpus (issue 14) at N orders, seeded (MONEY_SEED replays one): the ERP books what
# the shop charged, to the minor unit. make test runs 24.
N ?= 1000
money: setup $(ERPSYNC)
	cargo build $(CARGO_FLAGS) -p erpsync-e2e --tests
	MONEY_ORDERS=$(N) $(ERPSYNC) stack run -- cargo test $(CARGO_FLAGS) -p erpsync-e2e --test e2e -- --nocapture --exact money::the_erp_books_what_the_shop_charged_to_the_minor_unit

# Every fuzz target (signatures and parsing of each webhook kind, mapping, the config
# loader) for FUZZ_SECONDS each, seeded from the real payloads. CI runs a short round; run a
# long one by hand: make fuzz FUZZ_SECONDS=600.
FUZZ_SECONDS ?= 20
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

# Figures, never timed assertions: writes bench/report.md and bench/*.json.
BENCH_SKUS ?= 50000
# Orders updated in reconciliation's 6-hour window (issue 15).
BENCH_ORDERS ?= 20000
# The stores' plans the stock bench runs at (standard, advanced, plus): one run each.
BENCH_PLANS ?= standard plus
# Variants per product in the price bench's catalogue (prices are written a product at a time).
BENCH_VARIANTS ?= 10
FUNCTIONS := shop-webhook order-sync stock-sync price-sync reconcile shipment-sync courier-webhook return-sync
bench: setup $(ERPSYNC)
	cargo build --release $(CARGO_FLAGS) -p sandbox -p erpsync-bench $(addprefix -p ,$(FUNCTIONS))
	for plan in $(BENCH_PLANS); do mkdir -p bench/$$plan && \
	  SANDBOX_BIN=target/release/sandbox target/release/stock-bench $(BENCH_SKUS) bench/$$plan $$plan && \
	  SANDBOX_BIN=target/release/sandbox target/release/price-bench $(BENCH_SKUS) bench/$$plan $$plan $(BENCH_VARIANTS) && \
	  SANDBOX_BIN=target/release/sandbox target/release/reconcile-bench $(BENCH_ORDERS) bench/$$plan $$plan \
	  || exit 1; done
	tools/bench/callgrind.sh bench
	# The deployable arm64 packages, for their sizes (cargo lambda from the stack's venv).
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 --output-format zip \
	  $(addprefix -p ,$(FUNCTIONS))
	target/release/fn-bench --binaries target/release --packages target/lambda --out bench
	tools/bench/report.sh bench > bench/report.md
	cat bench/report.md

build: $(VENV)/.installed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 \
	  -p shop-webhook -p order-sync -p stock-sync -p price-sync -p reconcile \
	  -p shipment-sync -p courier-webhook -p return-sync

clean-stack:
	rm -rf $(STACK)
