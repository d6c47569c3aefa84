# Everything a person runs. `make test` and `make demo` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test lint typecheck format demo cluster bench migrate runner-image clean

$(STAMP): requirements.txt requirements-dev.txt agent/requirements.txt agent/pyproject.toml \
		client/requirements.txt client/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e ./agent
	$(PY) -m pip install -q --no-deps -e ./client
	touch $(STAMP)

venv: $(STAMP)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports --no-cache

typecheck: venv
	$(VENV)/bin/mypy .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: venv
	DEBUG=1 $(PY) manage.py migrate

# The whole marketplace on SQLite with a local agent; DEMO_PORT=8001 for another port.
demo: venv
	@if command -v npm >/dev/null 2>&1; then $(MAKE) frontend-dist; \
	else echo "npm not found: the web app is not built (the API and /api/docs/ still work)"; fi
	$(PY) scripts/run_demo.py $(if $(DEMO_PORT),--port $(DEMO_PORT))

# The production layout on this machine: HAProxy in front of 2 daphne, 2 Celery workers and beat,
# on PostgreSQL and Redis (DATABASE_URL, REDIS_URL); CLUSTER_PORT=8080 by default.
cluster: venv
	$(PY) scripts/cluster.py

bench: venv
	$(PY) -m bench

# The job runner image from Debian packages (no registry needed); FORCE=1 rebuilds it.
runner-image:
	scripts/build-runner-image.sh $(if $(filter 1 yes true,$(FORCE)),--force)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# --- The web app (frontend/): Node 20+ and npm. The build lands in frontend/dist, which Django
# serves (whitenoise for /static/assets/, config/spa.py for app routes).
NPM ?= npm
.PHONY: frontend frontend-deps frontend-dist frontend-schema frontend-test frontend-e2e

frontend/node_modules/.package-lock.json: frontend/package.json frontend/package-lock.json
	cd frontend && $(NPM) ci --no-audit --no-fund

frontend-deps: frontend/node_modules/.package-lock.json

# The OpenAPI schema and the typed client generated from it (both committed).
frontend-schema: venv frontend-deps
	DEBUG=1 $(PY) manage.py spectacular --file frontend/openapi.yaml --validate
	cd frontend && npx openapi-typescript openapi.yaml -o src/api/schema.d.ts

frontend: frontend-schema
	cd frontend && npx tsc --noEmit -p . && npx vite build

# Build the web app from the committed typed client (no schema regeneration): what the demo needs.
frontend-dist: frontend-deps
	cd frontend && npx vite build

frontend-test: frontend-deps
	cd frontend && npx tsc --noEmit -p . && npx vitest run

# Browser end-to-end tests against a running server (see frontend/e2e/README.md).
frontend-e2e: frontend-deps
	cd frontend && node e2e/run.mjs
