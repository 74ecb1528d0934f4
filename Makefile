# Two commands on a fresh machine: `make demo`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CATALOG := data/demo_catalog/catalog.jsonl
BUILT := model_repository/generations/1.json  # written last by the build: the generation is complete
FASHION_MNIST := /usr/share/datasets/fashion-mnist
PROMETHEUS := /usr/bin/prometheus  # Debian's package: prometheus and promtool
CHROMIUM := /usr/bin/chromium  # Debian's package: the browser the console's Playwright tests drive
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc  # Debian's fonts-noto-cjk: Chinese in the screenshots
PERF_ANALYZER := $(VENV)/perf_analyzer/perf_analyzer  # NVIDIA's load generator, from pinned wheels
LIBB64 := /usr/lib/x86_64-linux-gnu/libb64.so.0d  # Debian's libb64-0d: perf_analyzer links it
APT := $(if $(filter 0,$(shell id -u)),,sudo) apt-get

.PHONY: demo test install models serve stop status index clean loadtest bench evaluate evaluate-photos observe observe-stop console-screenshots observe-screenshot deploy-secrets deploy-tls

demo: models  ## build (once), serve, index (once), run example searches, start the console (http://127.0.0.1:8080)
	$(PY) -m productsearch.control.demo
	$(PY) -m productsearch.control.console start

TEST_WORKERS ?= 2
test: models | $(PROMETHEUS) $(CHROMIUM) $(CJK_FONT)  ## unit + integration tests against real tritonservers (and promtool), in TEST_WORKERS processes (a file each)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

install: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q pip==26.3
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install -q -r requirements.txt  # playwright drives Debian's chromium
	$(PY) -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $@

models: $(BUILT)

$(BUILT): $(INSTALLED) | $(FASHION_MNIST)
	$(PY) build_models.py --preset demo

# The Fashion-MNIST photos the image tower trains on (train split) and is measured on (test split):
# Debian's package, installed once when missing (the build refuses to guess without it).
$(FASHION_MNIST):
	@command -v apt-get >/dev/null || { echo "install Debian's dataset-fashion-mnist (no apt-get here)"; exit 1; }
	$(APT) install -y -q dataset-fashion-mnist >/dev/null || \
	  { $(APT) update -q >/dev/null && $(APT) install -y -q dataset-fashion-mnist >/dev/null; }

# Debian's prometheus (and promtool), installed once when missing: `make observe`, the config tests.
$(PROMETHEUS):
	@command -v apt-get >/dev/null || { echo "install Debian's prometheus (no apt-get here)"; exit 1; }
	DEBIAN_FRONTEND=noninteractive $(APT) install -y -q --no-install-recommends prometheus >/dev/null || \
	  { $(APT) update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $(APT) install -y -q --no-install-recommends prometheus >/dev/null; }

# Debian's chromium and a CJK font, installed once when missing: the console's browser tests and screenshots.
$(CHROMIUM) $(CJK_FONT):
	@command -v apt-get >/dev/null || { echo "install Debian's chromium and fonts-noto-cjk (no apt-get here)"; exit 1; }
	DEBIAN_FRONTEND=noninteractive $(APT) install -y -q --no-install-recommends chromium fonts-noto-cjk >/dev/null || \
	  { $(APT) update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $(APT) install -y -q --no-install-recommends chromium fonts-noto-cjk >/dev/null; }

# perf_analyzer 2.41 (the tritonclient wheel's binary) and the CUDA 12 runtime it links, into the venv.
$(PERF_ANALYZER): $(INSTALLED) | $(LIBB64)
	$(PY) -m loadtest.perf_analyzer install

$(LIBB64):
	@command -v apt-get >/dev/null || { echo "install Debian's libb64-0d (no apt-get here)"; exit 1; }
	$(APT) install -y -q libb64-0d >/dev/null || { $(APT) update -q >/dev/null && $(APT) install -y -q libb64-0d >/dev/null; }

console-screenshots: models | $(CHROMIUM) $(CJK_FONT)  ## the console's search and compare pages (1280x900) into docs/, taken by its browser tests
	CONSOLE_SCREENSHOTS=docs $(PY) -m pytest -q tests/integration/test_console.py -k "chinese or compare"
	CONSOLE_SCREENSHOTS=docs $(PY) -m pytest -q tests/integration/test_experiments.py  # the arms: after its shoppers

observe-screenshot: models | $(CHROMIUM) $(PROMETHEUS)  ## Prometheus's graph page of the searches by kind into docs/, taken by its browser test
	OBSERVE_SCREENSHOTS=docs $(PY) -m pytest -q tests/integration/test_metrics.py -k graph_page

observe: serve | $(PROMETHEUS)  ## a real Prometheus scraping the running service, alerts loaded (PROMETHEUS_PORT, 9090)
	$(PY) -m productsearch.control.observe start

observe-stop:  ## stop the background Prometheus (by PID)
	$(PY) -m productsearch.control.observe stop

serve: models  ## start Triton and the console (CONSOLE_PORT, 8080) in the background if they are not up (idempotent)
	$(PY) -m productsearch.control.launcher start
	$(PY) -m productsearch.control.console start

stop:  ## stop the background console and Triton (by PID) and wait for them to exit
	$(PY) -m productsearch.control.console stop
	$(PY) -m productsearch.control.launcher stop

status:
	$(PY) -m productsearch.control.launcher status

deploy-secrets:  ## Milvus's and MinIO's credentials for compose `--profile scale` and Kubernetes, made once into deploy/secrets/ (git-ignored)
	python3 deploy/make_secrets.py

deploy-tls:  ## deploy-secrets plus a trial CA and gRPC TLS certificates in deploy/secrets/tls/ (docker-compose.tls.yml, Kubernetes grpc-tls)
	python3 deploy/make_secrets.py --tls

index: serve  ## (re-)load the demo catalog into the live service (upsert_products)
	$(PY) -m clients.index $(CATALOG) --url $(shell $(PY) -m productsearch.control.launcher url)

clean: stop
	rm -rf run data model_repository/*/[0-9]*/text_model model_repository/*/[0-9]*/image_tower model_repository/catalog_store

USERS ?= 16
DURATION ?= 60s
LOCUST_HOST ?= $(shell $(PY) -m productsearch.control.launcher url)
loadtest: serve  ## headless Locust against the background server (UI=1: web UI on :8089 instead)
	$(PY) -m locust -f loadtest/locustfile.py --host $(LOCUST_HOST) $(if $(UI),,--headless -u $(USERS) -r $(USERS) -t $(DURATION) --only-summary)

BENCH_ARGS ?=
bench: models $(PERF_ANALYZER)  ## latency/throughput harness on a private server (~10 min; BENCH_ARGS=--quick); records BENCHMARKS.md
	$(PY) -m loadtest.bench --write $(BENCH_ARGS)

QUERIES ?= data/demo_queries.jsonl
EVAL_ARGS ?=
evaluate: serve  ## Recall/nDCG/MRR@10 of the served search on a query set (default: demo held-out); report in run/evaluate/
	$(PY) -m productsearch.demo.queries data/demo_queries.jsonl
	$(PY) -m productsearch.evaluation.search_quality $(QUERIES) --url $(shell $(PY) -m productsearch.control.launcher url) --catalog $(CATALOG) $(EVAL_ARGS)

PHOTO_ARGS ?=
evaluate-photos: serve  ## P@10 on Fashion-MNIST's 10,000 test photos through the served search (shop fashion-mnist); report in run/evaluate_photos/
	$(PY) -m productsearch.evaluation.photo_quality --url $(shell $(PY) -m productsearch.control.launcher url) $(PHOTO_ARGS)
