# hearth — the two commands: `make run` and `make test`.
#
#   make run    install what building and running need if missing (APT_PACKAGES), fetch and verify
#               the default models, build, and serve on 127.0.0.1:8080 (state in ./data, watched
#               folder ./inbox). Nothing only the tests use is installed.
#   make test   the same setup, then the test tools (TEST_APT_PACKAGES, cargo-generate-rpm, the
#               Python packages of tests/requirements.txt), then the whole test suite against the
#               release build
#
# Tests run against the release build: llama.cpp is compiled once, and optimised inference keeps
# the integration tests fast.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# What building and running need: the C/C++ toolchain for llama.cpp and bindgen, libsystemd for
# sd_notify, python3 + venv + unzip to fetch and convert the models, binutils (strip).
APT_PACKAGES := cmake clang libclang-dev libsystemd-dev pkg-config python3 python3-venv unzip binutils tesseract-ocr tesseract-ocr-eng
# What only the tests use: systemd (systemd-analyze, systemd-sysusers) for the unit tests, prometheus
# (promtool) for the metrics test, rpm and cpio to inspect the RPM. On a Debian host with systemd,
# installing prometheus also starts a Prometheus server: one more reason `make run` does not.
# chromium and chromium-driver run the web console's browser test (tests/tests/console.rs).
TEST_APT_PACKAGES := systemd prometheus rpm cpio chromium chromium-driver
# cargo-generate-rpm builds the RPM from [package.metadata.generate-rpm] in daemon/Cargo.toml.
GENERATE_RPM_VERSION := 0.21.1

.PHONY: run test setup deps test-deps tools models build rpm cuda rpm-cuda clean test-tools fuzz fuzz-api

run: setup build
	mkdir -p data inbox
	./target/release/hearth serve

test: setup test-deps test-tools
	$(CARGO) build --release --workspace --bins
	$(MAKE) rpm
	$(CARGO) test --release --workspace

setup: deps models

# Debian packages, installed only when something is missing: $(call apt_install,PACKAGES).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

# System packages the build and the daemon need.
deps:
	$(call apt_install,$(APT_PACKAGES))

# System packages and cargo tools only the tests use.
test-deps: tools
	$(call apt_install,$(TEST_APT_PACKAGES))

# Cargo tools, installed only when missing (cargo-generate-rpm: compiled once, then cached in ~/.cargo/bin).
tools:
	@command -v cargo-generate-rpm >/dev/null 2>&1 || $(CARGO) install --locked cargo-generate-rpm --version $(GENERATE_RPM_VERSION)

models:
	packaging/models/fetch_models.sh

# Python packages only the tests use (schemathesis drives the API from its OpenAPI document).
test-tools: models
	.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt

# cargo-fuzz targets (fuzz/): each runs FUZZ_SECONDS; a crash stops with its input in fuzz/artifacts/.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz --version 0.13.2
	cd fuzz && for t in $$(RUSTC_BOOTSTRAP=1 $(CARGO) fuzz list); do \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 || exit 1; \
	done

# schemathesis against a live daemon from its /openapi.json: FUZZ_API_CASES generated cases per
# operation (CI runs 12 inside `make test`, tests/tests/openapi.rs). 500 with the document as served
# (--shallow: the model fields random, so most inference requests are refused early) sent 17,563
# requests in about 6 minutes on the 2-core box; FUZZ_API_ARGS= (empty) drives the real models, at
# about 9 requests a second there.
FUZZ_API_CASES ?= 500
FUZZ_API_ARGS ?= --shallow
fuzz-api: test-tools build
	.venv/bin/python tests/python/fuzz_api.py --binary target/release/hearth --max-examples $(FUZZ_API_CASES) $(FUZZ_API_ARGS)

# The RPM, from the release binary (stripped here: cargo-generate-rpm does not strip), into target/rpm/.
# llama.cpp's shared libraries go to /usr/lib64/hearth (the binary's run path) and the CPU backends to
# /usr/lib64/hearth/backends; the release build puts both beside the binary (engine/build.rs).
rpm: tools
	rm -rf target/release/rpm && mkdir -p target/release/rpm/lib target/release/rpm/backends target/rpm
	strip --strip-debug -o target/release/rpm/hearth target/release/hearth
	for f in target/release/lib/*.so*; do strip --strip-debug -o target/release/rpm/lib/$$(basename $$f) $$f; done
	for f in target/release/backends/libggml-cpu-*.so; do strip --strip-debug -o target/release/rpm/backends/$$(basename $$f) $$f; done
	$(CARGO) generate-rpm -p daemon -o target/rpm/

# The CUDA backend, libggml-cuda.so, into target/release/backends/ (where a build's hearth loads
# backends from), built with this machine's CUDA toolkit or, where there is none, with NVIDIA's
# compiler and runtime from PyPI (packaging/cuda/make_cuda.sh): no GPU and no CUDA install needed.
# CUDA_ARCHS="90" limits the build to one GPU generation (default: this machine's GPUs, else
# 80;86;89;90; each takes about 35 CPU-minutes).
cuda: deps
	$(call apt_install,ninja-build g++)
	packaging/cuda/make_cuda.sh target/release/backends

# hearth-cuda-VERSION.rpm (target/rpm/): libggml-cuda.so for /usr/lib64/hearth/backends, requiring
# hearth of the same version and, through its automatic requirements, the CUDA 13 runtime libraries.
HEARTH_VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
rpm-cuda: tools
	test -f target/release/backends/libggml-cuda.so || $(MAKE) cuda
	mkdir -p target/release/rpm-cuda target/rpm
	strip --strip-debug -o target/release/rpm-cuda/libggml-cuda.so target/release/backends/libggml-cuda.so
	$(CARGO) generate-rpm -p daemon --variant cuda -o target/rpm/ -s 'requires = { hearth = "= $(HEARTH_VERSION)" }'

build:
	$(CARGO) build --release --bin hearth

clean:
	$(CARGO) clean
