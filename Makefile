# The README's two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean sanity molecule bench plugin-docs changelog

venv: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt controlplane/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-test.txt -e ./controlplane
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python demo/run_demo.py

# Tests that must hold on the lowest and the highest supported core also run their playbooks with
# the ansible-playbook of ansible-core 2.16 (BS_EXTRA_ANSIBLE_BINS; such a test fails if it is missing).
CORE_MIN_BIN := $(CURDIR)/.build/venv-core2.16/bin

test: $(STAMP) .build/venv-core2.16/.installed
	BS_EXTRA_ANSIBLE_BINS="$(CORE_MIN_BIN)" PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests

# sanity: ansible-test sanity and units (ansible-core 2.16, 2.19 and the newest in a Debian 13
# container), ansible-lint, doc rendering, build-and-install, changelog lint (.ci/sanity.sh; a summary
# with each step's time comes last). Needs root and podman for the container step.
CORE_VERSIONS := 2.16 2.19
CORE_STAMPS := $(foreach v,$(CORE_VERSIONS),.build/venv-core$(v)/.installed)
LINT_STAMP := .build/venv-lint/.installed

.build/venv-core%/.installed: requirements.txt requirements-test.txt tests/unit/requirements.txt controlplane/pyproject.toml
	$(PYTHON) -m venv .build/venv-core$*
	.build/venv-core$*/bin/pip install --quiet 'ansible-core==$*.*' -r requirements.txt -r requirements-test.txt \
		-r tests/unit/requirements.txt -e ./controlplane
	touch $@

$(LINT_STAMP): requirements.txt
	$(PYTHON) -m venv .build/venv-lint
	.build/venv-lint/bin/pip install --quiet ansible-lint antsibull-changelog 'ansible-core>=2.16' -r requirements.txt
	touch $@

sanity: $(CORE_STAMPS) $(LINT_STAMP)
	.ci/sanity.sh

# plugin-docs: regenerate docs/plugins/ from the plugins' DOCUMENTATION (checked by make sanity)
plugin-docs: .build/venv-core2.19/.installed
	PATH="$(CURDIR)/.build/venv-core2.19/bin:$$PATH" .build/venv-core2.19/bin/python .ci/plugin-docs.py docs/plugins

# changelog: CHANGELOG.md for the release in galaxy.yml, from changelogs/fragments (rerun when fragments change)
changelog: $(LINT_STAMP)
	.ci/changelog.sh

# molecule: the scenarios under extensions/molecule (podman containers reached over SSH); installs
# podman and builds the host image when they are missing (extensions/molecule/README.md)
MOLECULE_VENV := .build/venv-molecule
MOLECULE_STAMP := $(MOLECULE_VENV)/.installed

$(MOLECULE_STAMP): requirements.txt requirements-molecule.txt controlplane/pyproject.toml
	$(PYTHON) -m venv $(MOLECULE_VENV)
	$(MOLECULE_VENV)/bin/pip install --quiet --upgrade pip
	$(MOLECULE_VENV)/bin/pip install --quiet -r requirements.txt -r requirements-molecule.txt -e ./controlplane
	touch $@

molecule: $(MOLECULE_STAMP)
	PATH="$(CURDIR)/$(MOLECULE_VENV)/bin:$$PATH" sh extensions/molecule/run.sh

# bench: the benchmarks under bench/, a table on stdout and JSON under bench/results/
# (BENCH_QUICK=1: a smoke run; BENCH_ONLY="control_plane fleet": those parts only)
bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/run_bench.py $(if $(BENCH_QUICK),--quick) $(foreach part,$(BENCH_ONLY),--only $(part))

clean:
	rm -rf $(VENV) .build tests/output
