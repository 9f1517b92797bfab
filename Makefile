# offer-ai: `make demo` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPARK_RUNTIME := $(VENV)/.spark-runtime
DEMO_DIR ?= demo-output
PYTEST_ARGS ?= -q --durations=25
# conf/local.yaml's online_store.endpoint_url uses this port
DYNAMODB_PORT ?= 5055
# the local Spark standalone cluster (conf/local-cluster.yaml's spark.master uses this port)
SPARK_MASTER_PORT ?= 7077
CLUSTER_DIR ?= .offer_ai_build/cluster
CLUSTER_WORKERS ?= 2
WORKER_MEMORY ?= 1g

.PHONY: help venv spark-runtime test demo bench bench-pipeline bench-freshness clean check-java constraints dynamodb-start dynamodb-stop dynamodb-status \
	cluster-start cluster-stop cluster-status

help:
	@echo "make demo   build the venv, then run the pipeline on generated data into $(DEMO_DIR)/"
	@echo "make test   build the venv, then run the test suite"
	@echo "make venv   create $(VENV) (Python 3.11) with every dependency; a no-op when nothing changed"
	@echo "make bench  run the benchmarks under bench/ (make bench-pipeline, make bench-freshness: one each)"
	@echo "make dynamodb-start / dynamodb-stop / dynamodb-status   the local DynamoDB and S3 (moto server on 127.0.0.1:$(DYNAMODB_PORT))"
	@echo "make cluster-start / cluster-stop / cluster-status   a Spark standalone cluster on 127.0.0.1 (master :$(SPARK_MASTER_PORT), $(CLUSTER_WORKERS) workers)"
	@echo "make clean  remove generated data (lake, demo output, build files); keeps the venv"

check-java:
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [[ -z "$$v" || "$$v" -lt 17 ]]; then \
	  echo "Java 17 or newer is required for Spark (found: $${v:-none}): install it, e.g. 'apt-get install openjdk-17-jdk-headless', or point JAVA_HOME at one."; \
	  exit 1; \
	fi

venv: $(SPARK_RUNTIME)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required: install it (e.g. pyenv install 3.11) or run make PYTHON=/path/to/python3.11."; exit 1; }
	@[[ -x $(BIN)/python ]] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# The Delta jars installed into the venv's Spark (no Ivy resolution on every start) and the
# class-data-sharing archive of a warm-up run: a job starts in ~6 s instead of ~11 s.
$(SPARK_RUNTIME): $(STAMP) scripts/spark_runtime.py lib/offer_ai/spark.py | check-java
	@rm -f $(VENV)/lib/python3.11/site-packages/pyspark/conf/spark-defaults.conf  # an older venv's: its --packages line made every start resolve
	$(BIN)/python scripts/spark_runtime.py jars
	$(BIN)/python scripts/spark_runtime.py cds
	@touch $(SPARK_RUNTIME)
	@echo "venv ready: $(VENV)"

spark-runtime:
	$(BIN)/python scripts/spark_runtime.py jars --force
	$(BIN)/python scripts/spark_runtime.py cds --force

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv
	@bash scripts/demo.sh "$(DEMO_DIR)"

bench: venv
	@for b in bench/*.py; do [ "$$b" = bench/benchlib.py ] && continue; echo "== $$b"; $(BIN)/python $$b || exit 1; done

bench-pipeline: venv
	$(BIN)/python bench/pipeline.py

bench-freshness: venv
	$(BIN)/python bench/freshness.py

constraints: venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^offer.ai' > constraints.new && \
	  { sed -n '1,2p' constraints.txt; cat constraints.new; } > constraints.tmp && mv constraints.tmp constraints.txt && rm constraints.new

dynamodb-start: venv
	$(BIN)/python -m offer_ai.online.local_dynamodb start --port $(DYNAMODB_PORT) --state-dir .offer_ai_build

dynamodb-stop:
	@if [[ -x $(BIN)/python ]]; then $(BIN)/python -m offer_ai.online.local_dynamodb stop --port $(DYNAMODB_PORT) --state-dir .offer_ai_build; fi

dynamodb-status: venv
	@$(BIN)/python -m offer_ai.online.local_dynamodb status --port $(DYNAMODB_PORT) --state-dir .offer_ai_build

# A master and workers from the venv's Spark, on 127.0.0.1; the last line of cluster-start is
# the master URL. A start that fails stops what it started (scripts/local_cluster.py).
cluster-start: venv
	@$(BIN)/python scripts/local_cluster.py start --state-dir $(CLUSTER_DIR) --port $(SPARK_MASTER_PORT) \
	  --workers $(CLUSTER_WORKERS) --worker-memory $(WORKER_MEMORY)

cluster-stop:
	@if [[ -x $(BIN)/python ]]; then $(BIN)/python scripts/local_cluster.py stop --state-dir $(CLUSTER_DIR); fi

cluster-status: venv
	@$(BIN)/python scripts/local_cluster.py status --state-dir $(CLUSTER_DIR)

clean: dynamodb-stop cluster-stop
	rm -rf lake $(DEMO_DIR) .offer_ai_build spark-warehouse metastore_db derby.log .pytest_cache
