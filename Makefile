# The two commands a newcomer needs: `make run` and `make test`. Everything installs itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
# checkov scans the Helm chart's rendered manifests; its pinned dependencies conflict with ours,
# so it lives in a venv of its own.
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cat deploy/checkov-requirements.txt | cksum | cut -d' ' -f1)
# Debian packages: chromium renders the bench report (tests/bench); tesseract reads burned-in
# text for de-identification (libs/medrelay/deid), in tests, `make run` and `make bench`.
CHROMIUM      ?= /usr/bin/chromium
TESSERACT     ?= /usr/bin/tesseract

.PHONY: run test proto lint bench install chart clean os-packages

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing medrelay and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@{ $(PY) -m pip install --disable-pip-version-check --upgrade "pip>=24" && \
	   $(PY) -m pip install --disable-pip-version-check -c constraints.txt -e '.[dev]'; \
	 } > $(VENV)/install.log 2>&1 || { tail -40 $(VENV)/install.log; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

$(CHECKOV_STAMP): deploy/checkov-requirements.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@echo "installing checkov into $(CHECKOV_VENV) (log: $(CHECKOV_VENV)/install.log)"
	@{ $(CHECKOV_VENV)/bin/python -m pip install --disable-pip-version-check --upgrade "pip>=24" && \
	   $(CHECKOV_VENV)/bin/python -m pip install --disable-pip-version-check -r deploy/checkov-requirements.txt; \
	 } > $(CHECKOV_VENV)/install.log 2>&1 || { tail -40 $(CHECKOV_VENV)/install.log; exit 1; }
	@rm -f $(CHECKOV_VENV)/.installed-* && touch $@

install: $(STAMP)

## make run: the whole local stack (embedded PostgreSQL, dev PKI, every service over mutual TLS).
run: $(STAMP)
	@$(MAKE) --no-print-directory os-packages
	$(VENV)/bin/medrelay dev

## make test: the whole suite (unit, integration on real PostgreSQL and mTLS, e2e processes,
## and the Helm chart's checks in tests/deploy). What it needs is installed side by side: on a
## fresh machine the two venvs and the Debian packages take minutes each, mostly waiting on the network.
test:
	@$(MAKE) --no-print-directory -j3 $(STAMP) $(CHECKOV_STAMP) os-packages
	$(PY) -m pytest -q -p no:cacheprovider

## Debian's chromium and tesseract, in one apt-get when either is missing. A failure here is
## not fatal: the tests that need them try again and fail saying why (tests/debian_packages.py).
OS_PACKAGES := $(if $(wildcard $(CHROMIUM)),,chromium) \
               $(if $(wildcard $(TESSERACT)),,tesseract-ocr tesseract-ocr-eng)
os-packages:
	@test -z "$(strip $(OS_PACKAGES))" || { \
	  mkdir -p .medrelay; \
	  echo "installing Debian's $(strip $(OS_PACKAGES)) with apt-get (log: .medrelay/apt-install.log)"; \
	  { export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y --no-install-recommends $(OS_PACKAGES) || \
	    { apt-get update && apt-get install -y --no-install-recommends $(OS_PACKAGES); }; \
	  } > .medrelay/apt-install.log 2>&1 || \
	  echo "apt-get failed (.medrelay/apt-install.log); the tests that need these will say why"; }

## make proto: regenerate the committed stubs under libs/medrelay/<service>/v1/.
proto: $(STAMP)
	$(PY) scripts/generate_protos.py

## make chart: render the Helm chart for its defaults and every deploy/helm/medrelay/ci/*.yaml,
## lint it strictly, validate every object against the Kubernetes schemas, scan it with checkov.
chart: $(STAMP) $(CHECKOV_STAMP)
	$(PY) scripts/check_chart.py

lint: $(STAMP)
	$(VENV)/bin/ruff check libs services tests bench scripts
	$(VENV)/bin/ruff format --check libs services tests bench scripts
	$(VENV)/bin/mypy libs/medrelay services

## make bench: speed figures as JSON lines, each beside the floor measured in the same run; the
## run as one JSON document and an HTML report with plots in bench/results/ (about 8 minutes
## on 2 cores). `$(PY) -m bench.report bench/results/<run>.json` rebuilds a report alone.
bench: $(STAMP)
	@$(MAKE) --no-print-directory os-packages
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .medrelay
