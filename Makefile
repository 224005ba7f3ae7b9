# Two commands set everything up on a fresh machine:
#   make app   -> creates .venv, installs, starts the Streamlit app on sample_data/
#   make test  -> creates .venv, installs, runs the whole test suite
# Re-running is fast: installation happens only when pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install app test lab browser sample-data benchmarks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned (==2.13.0) in pyproject.toml: on a CPU machine this takes the CPU wheel.
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the end-to-end browser test (never a browser download).
# Best effort: without apt or root the browser test skips with a reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "no apt/root: the browser test will be skipped"; fi; }

app: install
	$(BIN)/streamlit run app.py

test: install browser
	$(BIN)/python -m pytest

lab: install
	$(BIN)/jupyter lab notebooks/

sample-data: install
	$(BIN)/workbench synth sample_data

clean:
	rm -rf $(VENV) .pytest_cache
