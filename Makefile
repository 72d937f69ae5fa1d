# clickstream: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export CLICKSTREAM_BROKERS ?= 127.0.0.1:9092
PARTITIONS ?= 2
PROCESSES ?= 2

.DEFAULT_GOAL := help
.PHONY: help install kafka-up kafka-down pg-up pg-down topics demo run cluster test test-unit test-integration soak bench bench-quick bench-live clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed ## create .venv with the service and its test tools

kafka-up: $(VENV)/.installed ## start the local single-node Kafka (KRaft) on 127.0.0.1:9092
	scripts/kafka.sh up

kafka-down: ## stop the local Kafka
	scripts/kafka.sh down

pg-up: ## start the local PostgreSQL on 127.0.0.1:15432 (PG_PORT): database and superuser role clickstream
	scripts/pg.sh up

pg-down: ## stop the local PostgreSQL
	scripts/pg.sh down

topics: $(VENV)/.installed ## create the input, output and DLQ topics (PARTITIONS each) if missing
	$(PY) -m clickstream.topics --partitions $(PARTITIONS)

demo: $(VENV)/.installed ## the whole thing for ~30 s on a local broker and PostgreSQL: generator, dataflow, results
	$(PY) scripts/demo.py

run: $(VENV)/.installed ## the dataflow against CLICKSTREAM_BROKERS, recovery in .local/recovery
	$(PY) -m clickstream.cluster --processes 1 --recovery .local/recovery --snapshot 5

cluster: $(VENV)/.installed ## PROCESSES local processes (-i/-a), metrics on 3030.., recovery in .local/recovery-cluster
	$(PY) -m clickstream.cluster --processes $(PROCESSES) --recovery .local/recovery-cluster --snapshot 5

test: $(VENV)/.installed ## the whole suite: unit tests on 2 processes, then the integration tests one at a time (they start Kafka and PostgreSQL when none answers)
	$(PY) -m pytest -q -m "not integration" -n 2
	$(PY) -m pytest -q -m integration

test-unit: $(VENV)/.installed ## tests that need no broker
	$(PY) -m pytest -q -m "not integration"

test-integration: $(VENV)/.installed ## tests on the real broker only
	$(PY) -m pytest -q -m integration

SOAK_CLUSTER_RUNS ?= 50
SOAK_TESTS ?=

soak: $(VENV)/.installed ## long chaos and endurance runs: 30 SIGKILLs over 1M events, a storm of 100, the broker stopped for a minute, the state-expiry endurance run (10.9M events, 2M users, 3 h of event time, curves in bench/results/soak-*), the new-partition cluster test 50 times; SOAK_TESTS=file picks one
	CLICKSTREAM_SOAK=1 $(PY) -m pytest -q -s -m soak $(SOAK_TESTS)
	for i in $$(seq $(if $(SOAK_TESTS),0,$(SOAK_CLUSTER_RUNS))); do echo "cluster run $$i"; \
	  $(PY) -m pytest -q -x -p no:cacheprovider tests/integration/test_cluster.py \
	    -k a_partition_added_while_running_is_picked_up || exit 1; done

bench: $(VENV)/.installed ## benchmark vs the limit, naive Bytewax, Quix Streams, Flink SQL, Kafka Streams, Pathway, and the PostgreSQL output, then the sustainable live rate (BENCH_EVENTS, BENCH_REPEATS)
	scripts/kafka.sh up
	scripts/pg.sh up
	$(PY) -m bench.run

bench-quick: $(VENV)/.installed ## the same, 300,000 events, one run each, no memory runs, live rate search nor visits pass of the sessions pair: for use while optimising
	scripts/kafka.sh up
	scripts/pg.sh up
	BENCH_EVENTS=$${BENCH_EVENTS:-300000} BENCH_REPEATS=$${BENCH_REPEATS:-1} $(PY) -m bench.run --skip-memory --skip-live --skip-visits

bench-live: $(VENV)/.installed ## only the sustainable live rate search: ours at 1 and 2 processes, Flink SQL, Kafka Streams (BENCH_LIVE_ARGS, e.g. --only "flink sql")
	scripts/kafka.sh up
	$(PY) -m bench.live $(BENCH_LIVE_ARGS)

clean: ## remove .venv and .local (broker and database data, recovery stores)
	-scripts/kafka.sh down
	-scripts/pg.sh down
	rm -rf $(VENV) .local
