# Meterline: `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := bash
UV ?= python3 -m uv
PYTEST_ARGS ?= -m "not slow"

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.venv/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

.PHONY: install
install: .venv/.installed ## install Python 3.11+ dependencies from uv.lock into .venv

.PHONY: run
run: install ## run the embedded default (ingress + consumer + query on :8080, chDB in ./var)
	$(UV) run meterline init --config meterline.toml
	METERLINE_CONFIG_FILE=meterline.toml METERLINE_SIMULATOR_KEY=$${METERLINE_SIMULATOR_KEY:-sk-simulator} \
	  $(UV) run meterline all-in-one

.PHONY: demo
demo: install ## a few hundred requests through the embedded default, report printed and checked
	$(UV) run meterline demo

.PHONY: test
test: install ## the test suite: unit, real Kafka broker, embedded ClickHouse, end to end
	@status=0; $(UV) run pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; status=0; fi; exit $$status

.PHONY: test-slow
test-slow: install ## the long tests only: load test, heavier fault injection (pytest -m slow)
	@status=0; $(UV) run pytest -m slow || status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; status=0; fi; exit $$status

.PHONY: deploy-tools
deploy-tools: install ## build helm, kubeconform, promtool and the Kubernetes schemas into .cache (needs go)
	$(UV) run python -m tests.support.deploy_tools

.PHONY: deploy-check
deploy-check: deploy-tools ## the chart's checks: helm lint, helm template + kubeconform -strict, promtool
	@$(UV) run pytest tests/deploy -q

.PHONY: kafka
kafka: install ## fetch Apache Kafka from Maven Central (cached in .cache/kafka) and run a broker on :9092
	$(UV) run python -m tests.support.kafka_broker --port 9092

.PHONY: lint
lint: install ## ruff lint and format check; the service boundary (import-linter)
	$(UV) run ruff check services tests bench
	$(UV) run ruff format --check services tests bench
	$(UV) run lint-imports

.PHONY: format
format: install ## ruff format and autofix
	$(UV) run ruff format services tests bench
	$(UV) run ruff check --fix services tests bench

.PHONY: typecheck
typecheck: install ## mypy --strict over the services, the tests and the benchmarks
	$(UV) run mypy

.PHONY: bench
bench: install ## benchmarks (see BENCHMARKS.md)
	$(UV) run python -m bench.run

.PHONY: bench-quick
bench-quick: install ## every benchmark at tiny sizes, in seconds (results in bench/results, not spliced)
	$(UV) run python -m bench.run --quick
