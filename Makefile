# Build, test and read the Neural ODE book.  `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV  := .venv
BIN   := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
HTML  := _build/html
HOST  := 127.0.0.1
PORT  ?= 8000

# Tools run from the venv, and every Jupyter kernel they start (book build, nbval,
# `make notebooks`, `make lab`) is the venv's python: the venv's python3 kernelspec is
# preferred over any user-wide one, and it names `python`, which resolves to the venv.
export PATH := $(BIN):$(PATH)
export JUPYTER_PREFER_ENV_PATH := 1
# Chapters draw with matplotlib's inline backend; a backend inherited from the caller
# (MPLBACKEND=Agg, say) would make plt.show() warn and fail the strict build.
unexport MPLBACKEND
# One BLAS thread in every kernel: the book's matrices are small, and a second thread only adds
# overhead (chapter 11's training: 11.6 s with one thread, 15.5 s with two) and variation.
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1

# Paired chapters: book/*.md files with a jupytext header (NN_*.md chapters, A*_*.md appendices). `make notebooks` keeps cell ids
# (jupytext --update), records no timings and merges each cell's consecutive stream outputs
# (how a kernel splits printed text varies from run to run), so unchanged chapters give
# unchanged notebooks.
# Override to re-execute a few: make notebooks CHAPTERS=book/03_euler_method.md
CHAPTERS = $(shell grep -l '^jupytext:' book/*.md 2>/dev/null)

# pytest exits with 5 when a stage collects no test (no engine tests yet, say): that stage
# has nothing to check and does not fail.
define pytest_stage
$(BIN)/pytest -ra $(1) || { rc=$$?; if [ $$rc -eq 5 ]; then echo 'pytest collected no test in this stage: nothing to check.'; else exit $$rc; fi; }
endef

NBVAL_ARGS := --nbval --nbval-current-env --nbval-cell-timeout=600 \
              --nbval-sanitize-with tests/nbval_sanitize.cfg
# The engine tests, the notebooks and the browser pages are spread over one pytest worker per core
# (pytest-xdist); a notebook's cells stay together in one worker and one kernel (--dist loadfile).
# PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= auto
PARALLEL = -p xdist -n $(PYTEST_WORKERS)
TEST_STAGES := test-engine test-notebooks test-pairing test-build test-browser

.PHONY: help venv chromium book translations test $(TEST_STAGES) serve lab notebooks bench clean

help:
	@echo 'make venv       create .venv and install requirements.txt (the engine in editable mode)'
	@echo 'make book       build the English and Korean editions into $(HTML) and $(HTML)/ko from the'
	@echo '                outputs stored in notebooks/ (executes nothing)'
	@echo 'make translations  update the Korean catalogues locale/ko/LC_MESSAGES/ from the English text'
	@echo 'make test       engine tests, nbval, pairing, strict book build, browser checks'
	@echo '                (stages on their own: $(TEST_STAGES))'
	@echo 'make serve      serve $(HTML) on http://$(HOST):$(PORT)/ (offline)'
	@echo 'make lab        JupyterLab on the repository; chapters in book/ open as notebooks'
	@echo 'make notebooks  re-execute the chapters into notebooks/*.ipynb (CHAPTERS=... for some)'
	@echo 'make bench      solver, gradient and stiff-solver benchmarks, measured side by side (prints ratios)'
	@echo 'make clean      remove build and test artefacts (keeps .venv)'

# ---------------------------------------------------------------------------------------
# Environment

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -r requirements.txt
	@touch $@

# The browser stage drives Debian's Chromium. `make test` checks for it first, before the long
# stages: as root with apt-get it installs the package itself, otherwise it stops at once and says
# what to run.
CHROMIUM := /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	  echo "$(CHROMIUM) is missing: installing Debian's chromium with apt-get (the browser stage needs it)."; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium < /dev/null; \
	else \
	  echo "make test needs Debian's Chromium at $(CHROMIUM) for its browser stage, and it is missing."; \
	  echo "Install it, then run make test again:"; \
	  echo "    sudo apt-get update && sudo apt-get install -y chromium"; \
	  exit 1; \
	fi

# ---------------------------------------------------------------------------------------
# The book

# The book is rendered from the outputs stored in notebooks/ (which nbval proves reproducible), so
# nothing is executed here: tools/stored_outputs.py checks that every chapter's code is the code its
# notebook ran (or stops, naming the chapter and the command to run) and fills MyST-NB's cache.
book: venv
	$(BIN)/python tools/stored_outputs.py seed
	$(BIN)/python tools/build_book.py

# The Korean edition's catalogues: every message of the English sources is extracted (.pot files in
# _build/gettext), and sphinx-intl updates locale/ko/LC_MESSAGES/book/*.po from them: a new message
# is added untranslated, a changed one is marked fuzzy, and both show in English until translated.
translations: venv
	$(BIN)/python tools/stored_outputs.py seed
	rm -rf _build/gettext
	$(BIN)/python tools/build_book.py --gettext
	$(BIN)/sphinx-intl update -p _build/gettext -l ko -d locale -w 100

serve:
	@test -f $(HTML)/index.html || { echo 'No book in $(HTML): run "make book" first.'; exit 1; }
	@echo 'Serving the book at http://$(HOST):$(PORT)/  (Ctrl-C stops)'
	python3 -m http.server $(PORT) --bind $(HOST) --directory $(HTML)

# The server's root is the repository, so jupytext finds jupytext.toml and keeps each
# book/NN_*.md and notebooks/NN_*.ipynb pair in sync on save. The settings override makes
# a double click on a chapter open it as a notebook (right click > Open With > Editor
# still shows the text). LAB_ARGS passes more options, e.g. LAB_ARGS=--no-browser.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
LAB_ARGS ?=
lab: venv
	@mkdir -p $(dir $(LAB_SETTINGS))
	@printf '%s\n' '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers":' \
	  '  {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}' > $(LAB_SETTINGS)
	$(BIN)/jupyter lab --ServerApp.root_dir='$(CURDIR)' --LabApp.default_url=/lab/tree/book \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

notebooks: venv
	@chapters='$(CHAPTERS)'; \
	if [ -z "$$chapters" ]; then echo 'No paired chapter (book/NN_*.md with a jupytext header) yet.'; exit 0; fi; \
	mkdir -p notebooks; \
	for md in $$chapters; do \
	  nb="notebooks/$$(basename "$$md" .md).ipynb"; \
	  echo "=== $$md -> $$nb"; \
	  $(BIN)/jupytext --update --to ipynb --output "$$nb" "$$md"; \
	  start=$$(date +%s.%N); \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=600 "$$nb"; \
	  $(BIN)/python tools/stored_outputs.py record "$$(basename "$$md" .md)" \
	    "$$(awk -v a="$$start" -v b="$$(date +%s.%N)" 'BEGIN { print b - a }')"; \
	  $(BIN)/jupyter nbconvert --to notebook --inplace --log-level=WARN \
	    --CoalesceStreamsPreprocessor.enabled=True "$$nb"; \
	done

# ---------------------------------------------------------------------------------------
# Tests, in order; each stage is also a target of its own.

test: venv chromium
	@timings=''; \
	for stage in $(TEST_STAGES); do \
	  echo; echo "=== make $$stage"; \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$stage; \
	  took=$$(( $$(date +%s) - start )); \
	  echo "=== make $$stage passed in $$took s"; \
	  timings="$$timings  $$stage: $$took s"$$'\n'; \
	done; \
	echo; echo 'All test stages passed:'; printf '%s' "$$timings"

# Unit and property tests of the engine (everything but notebooks and browser tests).
test-engine: venv
	@$(call pytest_stage,$(PARALLEL) tests -m "not notebooks and not browser")

# Re-run every executed notebook and compare its outputs with the stored ones, under a
# floating-point environment other than the one `make notebooks` used (another OpenBLAS kernel,
# NumPy's SIMD loops off: tests/perturbed_fp_env.py), so that a digit which depends on the
# processor fails here and not on a reader's machine. NBVAL_NATIVE=1 compares in the machine's own.
NBVAL_NATIVE ?=
# NBVAL_NOTEBOOKS=notebooks/05_adaptive_dopri5.ipynb compares only the notebooks named.
NBVAL_NOTEBOOKS ?= notebooks/
test-notebooks: venv
	@if compgen -G 'notebooks/*.ipynb' > /dev/null; then \
	  if [ -n '$(NBVAL_NATIVE)' ]; then perturb=''; else perturb="$$($(BIN)/python tests/perturbed_fp_env.py)"; fi; \
	  echo "nbval under: $${perturb:-its own floating-point environment (NBVAL_NATIVE=1)}" | tr '\n' ' '; echo; \
	  env $$perturb $(BIN)/pytest -ra $(PARALLEL) --dist loadfile $(NBVAL_ARGS) $(NBVAL_NOTEBOOKS); \
	else \
	  echo 'notebooks/ holds no .ipynb yet: nothing for nbval to compare.'; \
	fi

# Each chapter has its executed notebook, with the same code, and is in _toc.yml.
test-pairing: venv
	$(BIN)/pytest -ra tests -m notebooks

# Both editions build with every warning an error, broken references included (-W -n --keep-going),
# from the outputs that test-notebooks has just reproduced (nothing is executed again). It starts from an empty output
# folder, so no page of a removed or renamed chapter survives into the browser test.
test-build: venv
	rm -rf $(HTML)
	$(BIN)/python tools/stored_outputs.py seed
	$(BIN)/python tools/build_book.py --strict

# Every built page in headless Chromium: offline, math typeset, images and links sound.
test-browser: venv chromium
	$(BIN)/pytest -ra -rP $(PARALLEL) tests -m browser

# ---------------------------------------------------------------------------------------
# Benchmarks: scripts that print ratios measured side by side, and fail when a target is missed.

bench: venv
	$(BIN)/python bench/solvers.py
	$(BIN)/python bench/gradients.py
	$(BIN)/python bench/cnf.py
	$(BIN)/python bench/stiff.py

# ---------------------------------------------------------------------------------------

clean:
	rm -rf _build .pytest_cache .hypothesis .jupyter_cache
	find . -path ./$(VENV) -prune -o -type d \( -name __pycache__ -o -name .ipynb_checkpoints \) -print0 \
	  | xargs -0 rm -rf
