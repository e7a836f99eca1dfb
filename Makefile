# xvs — two commands do everything on a fresh machine:
#   make demo   the main job: a live lab in network namespaces, real HTTP
#               through `xvs run` (as root; tests/demo/lab_demo.sh)
#   make test   every test (unit, property, golden, end-to-end)
# Each installs what it needs, idempotently.

SHELL := /bin/bash
CARGO ?= cargo
# Debian packages the build and the tests need:
#   clang llvm libelf-dev zlib1g-dev pkg-config m4 libpcap-dev: XDP program
#     and libxdp/libbpf (AF_XDP driver)
#   tshark: golden tests dissect every output frame with checksum validation
#   keepalived: VRRP between two directors (tests/e2e_ha.rs, configs/keepalived/)
#   bird2: BGP and ECMP between directors and a router (tests/e2e_scale.rs,
#     configs/bird/, docs/scale-out.md)
#   nginx: a real server that speaks the PROXY protocol (tests/e2e_proxy.rs; run
#     unprivileged in a namespace with its own config, never as a service)
#   iproute2 iputils-ping nftables ethtool curl python3 openssl: namespace labs (openssl makes the HTTPS check's test certificate)
#   chromium chromium-driver: the monitor's end-to-end test drives a real
#     headless browser (tests/e2e_monitor.rs, tests/browser/)
#   dpkg-dev binutils adduser man-db systemd util-linux: the Debian package
#     (make deb: dpkg-shlibdeps, strip) and its test (install, man -l,
#     systemd-analyze verify, setpriv for the least-privilege lab)
APT_PKGS := clang llvm libelf-dev zlib1g-dev pkg-config m4 libpcap-dev keepalived bird2 nginx \
            tshark iproute2 iputils-ping nftables ethtool curl python3 openssl ca-certificates \
            chromium chromium-driver dpkg-dev binutils adduser man-db systemd util-linux

.PHONY: all deps build test test-faults deb deb-package demo bench bench-quick microbench linerate clean fuzz fuzz-seeds soak miri

all: build

# Installs only what is missing; a no-op when everything is there.
deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	    || { echo "deps: apt-get install failed for:$$missing" >&2; exit 1; }; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "deps: cargo not found (install Rust with rustup)" >&2; exit 1; }

build: deps
	$(CARGO) build --release

# The benchmarks and examples are type-checked too: cargo test does not
# build benches, and a bench that no longer compiles is a broken build.
# The package test (tests/deb.rs) installs the package of the binaries
# the tests run (no release build), checks it and purges it.
test: deps
	$(CARGO) check --all-targets --quiet
	$(CARGO) test --no-run --quiet
	$(MAKE) --no-print-directory deb-package DEB_DIR=debug
	XVS_DEB=$(DEB_FILE) $(CARGO) test -- --test-threads=2

# The Debian package: target/debian/xvs.deb (docs/operations.md), from
# the release build. deb-package packages the binaries of target/DEB_DIR
# as they are: stripped, with the man pages and completions of `xvs
# generate`, the unit, default configuration and maintainer scripts of
# debian/ and the rest of [package.metadata.deb] in Cargo.toml.
# cargo-deb is installed if missing.
DEB_DIR ?= release
DEB_FILE = target/debian/xvs.deb
deb: deps
	$(CARGO) build --release --bins
	$(MAKE) --no-print-directory deb-package DEB_DIR=release

deb-package:
	@command -v cargo-deb >/dev/null || $(CARGO) install --locked cargo-deb
	rm -rf target/pkg && mkdir -p target/pkg/bin
	strip -o target/pkg/bin/xvs target/$(DEB_DIR)/xvs
	strip -o target/pkg/bin/xvsadm target/$(DEB_DIR)/xvsadm
	target/pkg/bin/xvs generate target/pkg
	gzip -9n target/pkg/man/*
	$(CARGO) deb --no-build --no-strip --output $(DEB_FILE)
	@echo "deb: $(DEB_FILE)"

demo: build
	@tests/demo/lab_demo.sh

# Benchmarks (docs/performance.md): the replay benchmark (the worker over
# generated traffic in memory, every scenario, about 8 minutes; results in
# target/bench/results.json and a table), then the criterion
# micro-benchmarks in quick mode (about 4 minutes). BENCH_ARGS passes
# options to the replay benchmark, e.g. BENCH_ARGS="--filter est-dr --markdown".
bench: deps
	$(CARGO) bench --bench replay -- $(BENCH_ARGS)
	$(CARGO) bench --bench wire --bench conn --bench sched -- --quick
	$(CARGO) bench --bench steer
	$(CARGO) bench --bench handoff

# A one-minute smoke run of the replay scenarios with fewer flows and packets.
bench-quick: deps
	$(CARGO) bench --bench replay -- --quick $(BENCH_ARGS)
	$(CARGO) bench --bench steer -- --quick
	$(CARGO) bench --bench handoff -- --quick

# The criterion micro-benchmarks alone, full length: checksums, parse +
# rewrite per mode, connection lookup, schedulers, mh table build.
microbench: deps
	$(CARGO) bench --bench wire --bench conn --bench sched

# The veth line-rate harness (bench/linerate/): xvs run next to the
# kernel's nftables DNAT and a do-nothing AF_XDP forwarder, in network
# namespaces (docs/performance.md, "Line rate"). Needs root; options go in
# LINERATE_ARGS, e.g. make linerate LINERATE_ARGS="--runs 5 --json lr.json";
# two workers on two-queue veths against one: LINERATE_ARGS="--workers 1,2
# --spread owner,mixed --only xvs-dr --poll adaptive" (docs/performance.md).
linerate:
	@[ "$$(id -u)" = 0 ] || { echo "linerate: needs root (network namespaces, XDP, AF_XDP, nftables): run sudo make linerate" >&2; exit 1; }
	@$(MAKE) --no-print-directory deps
	$(CARGO) build --release --bins --example linerate
	$(CARGO) run --release --example linerate -- $(LINERATE_ARGS)

# The long fault-injection test (tests/e2e_flood.rs, docs/reliability.md):
# a SYN flood from FLOOD_SYNS spoofed sources (default 10 million) and a
# UDP flood through the live path (about 1.5 min). Needs root; CI runs it
# after make test (.ci/run).
FLOOD_SYNS ?= 10000000
test-faults: deps
	FLOOD_SYNS=$(FLOOD_SYNS) $(CARGO) test --test e2e_flood -- --ignored --nocapture

# Coverage-guided fuzzing (docs/reliability.md): every cargo-fuzz target
# in fuzz/ for FUZZ_TIME seconds each (default 180), one after the other,
# niced, corpora kept in fuzz/corpus/<target> (seeded from fuzz/seeds/).
# Installs the nightly toolchain and cargo-fuzz when missing. A crash
# lands in fuzz/artifacts/<target>/: copy it into fuzz/regressions/<target>/
# (tests/fuzz_regress.rs replays it in make test), then fix it.
# FUZZ_TARGETS picks targets, FUZZ_JOBS runs that many at once.
FUZZ_TIME ?= 180
FUZZ_JOBS ?= 1
FUZZ_TARGETS ?= $(basename $(notdir $(wildcard fuzz/fuzz_targets/*.rs)))
fuzz: deps
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && cargo +nightly fuzz build -s none -a
	@mkdir -p fuzz/corpus fuzz/logs
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P $(FUZZ_JOBS) -I{} sh -c '\
	  mkdir -p fuzz/corpus/{} && echo "fuzz: {} for $(FUZZ_TIME) s" && \
	  cd fuzz && nice -n 19 cargo +nightly fuzz run -s none -a {} corpus/{} seeds/{} -- \
	    -max_total_time=$(FUZZ_TIME) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 > logs/{}.log 2>&1; \
	  rc=$$?; tail -n 12 logs/{}.log | grep -E "^(stat::|#|==|SUMMARY|Done)" ; exit $$rc'

# (Re)writes the seed corpora in fuzz/seeds/ from the golden captures,
# configs/ and the ipvsadm parser (src/fuzz/seeds.rs).
fuzz-seeds:
	$(CARGO) test --test fuzz_regress -- --ignored write_seeds

# The soak (tests/soak.rs): the NAT lab under a traffic mix for DURATION
# seconds (default 300), sampled every SOAK_SAMPLE seconds (default 60);
# RSS, connections and UMEM chunks in target/soak/soak.csv, plotted to
# target/soak/soak.png with gnuplot (installed when missing). Needs root.
DURATION ?= 300
SOAK_SAMPLE ?= 60
soak: deps
	@command -v gnuplot >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null; }
	DURATION=$(DURATION) SAMPLE=$(SOAK_SAMPLE) $(CARGO) test --test soak -- --ignored --nocapture soak
	gnuplot -e "csv='target/soak/soak.csv'; png='target/soak/soak.png'" tests/soak.gp
	@echo "soak: target/soak/soak.csv, target/soak/soak.png"

# Miri (docs/reliability.md) over the unsafe code that runs without system
# calls: the connection table's arrays and index (src/ipvs/conn.rs), the
# AF_XDP ring index arithmetic over a heap ring, the UMEM area and pools
# (src/io/xdp/sys.rs, umem.rs), the memory blocks under them (src/ipvs/mem.rs).
# Proptests run 16 cases each (Miri is slow).
# Installs the nightly toolchain's miri component when missing.
miri:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@rustup +nightly component list --installed | grep -q '^miri' || rustup +nightly component add miri rust-src
	PROPTEST_CASES=16 MIRIFLAGS="-Zmiri-disable-isolation" $(CARGO) +nightly miri test --lib -- \
	  -Zunstable-options --report-time \
	  ipvs::conn ipvs::mem io::xdp::sys io::xdp::umem --skip many_connections_and_memory

clean:
	$(CARGO) clean
