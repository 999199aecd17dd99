# hearth — the two commands: `make run` and `make test`.
#
#   make run    install build dependencies if missing, fetch and verify the default models,
#               build, and serve on 127.0.0.1:8080 (state in ./data, watched folder ./inbox)
#   make test   the same setup, then the whole test suite against the release build
#
# Tests run against the release build: llama.cpp is compiled once, and optimised inference keeps
# the integration tests fast.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := cmake clang libclang-dev libsystemd-dev pkg-config python3 python3-venv unzip

.PHONY: run test setup deps models build clean

run: setup build
	mkdir -p data inbox
	./target/release/hearth serve

test: setup
	$(CARGO) build --release --workspace --bins
	$(CARGO) test --release --workspace

setup: deps models

# System packages the build needs, installed only when something is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

models:
	packaging/models/fetch_models.sh

build:
	$(CARGO) build --release --bin hearth

clean:
	$(CARGO) clean
