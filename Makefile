# The README's two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean sanity molecule bench

venv: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt controlplane/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-test.txt -e ./controlplane
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python demo/run_demo.py

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests

# sanity: ansible-test sanity and units, ansible-lint, doc rendering, build-and-install (issue gates)
sanity: $(STAMP)
	@echo "make sanity: not built yet" >&2; exit 1

# molecule: the scenarios under extensions/molecule (podman)
molecule: $(STAMP)
	@echo "make molecule: not built yet" >&2; exit 1

# bench: the benchmarks under bench/, a table on stdout and JSON under bench/results/
bench: $(STAMP)
	@echo "make bench: not built yet" >&2; exit 1

clean:
	rm -rf $(VENV) .build tests/output
