# Two commands set everything up on a fresh machine:
#   make app   -> creates .venv, installs, starts the Streamlit app on sample_data/
#   make test  -> creates .venv, installs, runs the whole test suite
# Re-running is fast: installation happens only when pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# one stamp per install group (pyproject's optional dependencies): each target installs what it
# needs; [test] pulls every group, so after `make test` the other targets install nothing new
STAMP  := $(VENV)/.installed-test

.PHONY: install app test test-fast lint format typecheck lab viewer3d browser sample-data clean
.PRECIOUS: $(VENV)/.installed-%

$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned (==2.13.0) in pyproject.toml: on a CPU machine this takes the CPU wheel.
	$(BIN)/pip install --quiet -e '.[$*]'
	touch $@

install: $(STAMP)

# Debian's chromium for the end-to-end browser test (never a browser download).
# Best effort: without apt or root the browser test skips with a reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "no apt/root: the browser test will be skipped"; fi; }

# the file watcher stays off (also in .streamlit/config.toml): nothing to reload while the app runs
app: $(VENV)/.installed-app
	$(BIN)/streamlit run app.py --server.fileWatcherType none

test: install browser lint typecheck
	$(BIN)/python -m pytest

# The quick loop while developing: everything but the tests marked slow, on all cores.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" -n auto -q

LINT_PATHS := workbench webapp pages app.py tests benchmarks

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

# Rewrites files: the formatter and ruff's safe fixes.
format: install
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

typecheck: install
	$(BIN)/mypy

# JupyterLab on the teaching notebooks; jupyter refuses root unless told (containers)
lab: $(VENV)/.installed-notebooks viewer3d
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

# The interactive 3D notebook viewer (itk-vtk-viewer, the viewer itkwidgets wraps) served locally:
# fetched once from the npm registry into an ignored folder, so notebooks never need a CDN or IPFS.
# Without it (or without npm) notebooks fall back to the app's offline plotly 3D view.
VIEWER_VERSION := 11.4.0
VIEWER := notebooks/_viewer

viewer3d: $(VIEWER)/itk-vtk-viewer/itkVtkViewer.js

$(VIEWER)/itk-vtk-viewer/itkVtkViewer.js:
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: notebooks will use the plotly 3D fallback"; exit 0; }; \
	rm -rf $(VIEWER)/tmp && mkdir -p $(VIEWER)/tmp && \
	cd $(VIEWER)/tmp && npm pack --silent itk-vtk-viewer@$(VIEWER_VERSION) >/dev/null && tar xzf itk-vtk-viewer-$(VIEWER_VERSION).tgz && cd - >/dev/null && \
	rm -rf $(VIEWER)/itk-vtk-viewer $(VIEWER)/tmp/package/dist/itk/PolyDataIOs $(VIEWER)/tmp/package/dist/itk/MeshIOs && \
	mv $(VIEWER)/tmp/package/dist $(VIEWER)/itk-vtk-viewer && rm -rf $(VIEWER)/tmp

sample-data: install
	$(BIN)/workbench synth sample_data

clean:
	rm -rf $(VENV) .pytest_cache
