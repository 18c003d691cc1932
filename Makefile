# grantsvc: thin targets, each one step that CI or a person runs as it is.
#   make          build the PV kernel (the production image: no lab code)
#   make lab-kernel  the lab build of the kernel (feature `lab`: scenarios, self-tests, benchmark)
#   make image-check  fail if the production image carries a lab symbol
#   make image-breakdown  where the production image's bytes are, by area and source file
#   make test     host tests, clippy (both targets, both builds), rustfmt check, image check, the
#                 quick Miri check, fuzz smoke, then the Xen lab
#   make lab      the Xen lab scenarios on the lab kernel (SCENARIOS="boot panic" for some of them)
#   make bench-host  the host scaling benchmark (10 vs 10,000 live regions; prints GOAL lines)
#   make bench    every benchmark of issue 10 in one lab boot plus the host figures; ends with the
#                 GOAL lines (BENCHES="grant vchan" for some lab benches only, without host figures)
#   make fresh-check  the lab's first-run path from nothing (install script in a clean Debian root,
#                 dom0 image into an empty cache); make test runs it when its recipe changed
#   make demo     the main job inside the Xen lab on the production image, console shown live
#   make miri     the host tests of the crates whose logic runs in the kernel, under Miri (nightly)
#   make miri-ci  the part of make miri that make test runs (our `unsafe` code, xenstore, all but
#                 the simulation-heavy groups of the library)
#   make fuzz     every fuzz target of peer input, FUZZ_SECONDS each (or FUZZ_RUNS executions)
#   make fuzz-smoke  every fuzz target for 15 s (part of make test)
#   make run      xl create domain.cfg on a real Xen host

# bash with pipefail: a recipe's pipeline fails when any stage does, not only the last.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c

TARGET      := x86_64-unknown-none
KERNEL      := target/$(TARGET)/release/grantsvc
# The lab build has its own target directory, so that both images exist side by side.
LAB_TARGET_DIR := target/lab-kernel
LAB_KERNEL  := $(LAB_TARGET_DIR)/$(TARGET)/release/grantsvc
# The production image again, with line tables (the same code), for make image-breakdown.
LINES_TARGET_DIR := target/image-lines
LINES_KERNEL := $(LINES_TARGET_DIR)/$(TARGET)/release/grantsvc
PEER        := target/release/grantsvc-peer
SCENARIOS   ?=
BENCHES     ?=
CARGO       ?= cargo

.PHONY: bench bench-host all kernel lab-kernel image-check image-breakdown peer target-installed packages host-test clippy fmt-check fresh-check fresh-check-if-changed nightly-tools miri-setup miri-grantsvc-first miri-grantsvc-second miri-xenstore miri miri-ci-grantsvc miri-ci single-threaded-checks fuzz fuzz-smoke test lab demo run clean

all: kernel

# Debian packages the host tests (libxen-dev's headers) and the lab (QEMU, debootstrap) need.
packages:
	tests/lab/install-packages

target-installed:
	rustup target add $(TARGET) >/dev/null 2>&1 || rustup target add $(TARGET)
	rustup component add clippy rustfmt >/dev/null 2>&1 || true

# Cargo does not see linker.ld as an input: a newer linker script forces the relink.
kernel: target-installed
	@if [ -f $(KERNEL) ] && [ linker.ld -nt $(KERNEL) ]; then touch src/main.rs; fi
	$(CARGO) build --release --target $(TARGET) --bin grantsvc

lab-kernel: target-installed
	@if [ -f $(LAB_KERNEL) ] && [ linker.ld -nt $(LAB_KERNEL) ]; then touch src/main.rs; fi
	$(CARGO) build --release --target $(TARGET) --bin grantsvc --features lab --target-dir $(LAB_TARGET_DIR)

image-check: kernel
	tests/image-check $(KERNEL)

image-breakdown: target-installed
	@if [ -f $(LINES_KERNEL) ] && [ linker.ld -nt $(LINES_KERNEL) ]; then touch src/main.rs; fi
	$(CARGO) build --release --target $(TARGET) --bin grantsvc --target-dir $(LINES_TARGET_DIR) \
		--config 'profile.release.debug="line-tables-only"' --config 'profile.release.strip="none"'
	tests/image-breakdown $(LINES_KERNEL)

peer:
	$(CARGO) build --release -p grantsvc-peer

host-test: packages
	$(CARGO) test --workspace
	$(CARGO) test -p grantsvc --lib --features lab cmdline

clippy: target-installed
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# The host scaling bench needs the simulated Xen (feature sim): --all-targets skips it.
	$(CARGO) clippy -p grantsvc --features sim --bench host_scaling -- -D warnings
	$(CARGO) clippy --target $(TARGET) -p grantsvc -p xenstore -p kernel-log --lib --bins -- -D warnings
	$(CARGO) clippy --target $(TARGET) -p grantsvc --features lab --lib --bins --target-dir $(LAB_TARGET_DIR) -- -D warnings

fmt-check:
	$(CARGO) fmt --all -- --check

bench-host:
	$(CARGO) bench --features sim --bench host_scaling

lab: lab-kernel peer
	GRANTSVC_KERNEL=$(LAB_KERNEL) tests/lab/run $(SCENARIOS)

# Never part of make lab or make test: benchmarks print figures, they do not pass or fail on them.
bench: kernel lab-kernel peer
	GRANTSVC_KERNEL=$(LAB_KERNEL) GRANTSVC_IMAGE=$(KERNEL) tests/lab/run --bench $(BENCHES)

# The nightly pieces Miri and cargo-fuzz need; a new machine has the nightly toolchain only.
nightly-tools:
	rustup component add --toolchain nightly miri rust-src >/dev/null 2>&1 || rustup component add --toolchain nightly miri rust-src
	command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz

# Proptest's case counts are cut under Miri (each case is thousands of times slower there; the
# properties with their own counts take smaller `cfg(miri)` ones); isolation is off so that
# proptest may read its configuration; provenance is permissive because the hypervisor layer's
# host tests pass addresses to the fake Xen as integers, as the real ABI does.
# grantsvc: the library's tests and the binary's (the hypervisor layer against a fake Xen); its
# tests/abi_layout*.rs run gcc, which Miri cannot spawn, and check no unsafe code.
MIRI_ENV := PROPTEST_CASES=4 MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-permissive-provenance"
# grantsvc's tests run in two parts that partition them exactly: the first runs those whose
# names contain one of these words, the second skips them. The first is blkif's and
# grant-share's sessions and two of the pmap's groups; the second the rest (vchan, the rest of
# the pmap, the binary's hypervisor-layer tests). Chosen from each test's time under Miri
# (`-Zunstable-options --report-time`, session 11) so that the second part and the xenstore
# crate's tests together take about as long as the first.
MIRI_FIRST_PART := peer::blkif peer::share pmap::tests::remove pmap::tests::ordinary
# The `+` lines get make's jobserver: cargo then builds with the cores no other run holds.
# Each Miri run has a target directory of its own: cargo holds a directory's lock while its
# tests run, so runs sharing one would wait for each other. Miri's sysroot is built once, first.
miri-setup: nightly-tools
	+$(CARGO) +nightly miri setup

# More arguments for the test binaries: MIRI_TEST_ARGS="--test-threads=1 -Zunstable-options
# --report-time" prints each test's time.
MIRI_TEST_ARGS ?=

miri-grantsvc-first: miri-setup
	+$(MIRI_ENV) $(CARGO) +nightly miri test -p grantsvc --lib --target-dir target/miri-first \
		-- $(MIRI_FIRST_PART) $(MIRI_TEST_ARGS)

miri-grantsvc-second: miri-setup
	+$(MIRI_ENV) $(CARGO) +nightly miri test -p grantsvc --lib --bins --target-dir target/miri-second \
		-- $(addprefix --skip ,$(MIRI_FIRST_PART)) $(MIRI_TEST_ARGS)

miri-xenstore: miri-setup
	+$(MIRI_ENV) $(CARGO) +nightly miri test -p xenstore --target-dir target/miri-xenstore \
		-- $(MIRI_TEST_ARGS)

# Miri interprets on one thread: its runs go two at a time, one per core (make starts the next
# as one ends). One after the other they took 81 minutes in session 10, some 60 in session 11.
MIRI_RUNS := miri-grantsvc-first miri-grantsvc-second miri-xenstore
miri:
	$(MAKE) -j2 --output-sync=line --no-print-directory $(MIRI_RUNS)

# What make test (and so CI) runs under Miri, with the same borrow tracking: every test that
# runs our `unsafe` code (grantsvc's binary: the hypervisor layer against the fake Xen; the
# library and the xenstore crate deny `unsafe`), the xenstore crate's tests (the parser and
# client that take peer bytes) and the library's tests but for the groups that drive the pmap
# or whole sessions through the simulated Xen. Those take most of make miri's hour of
# interpretation (session 11: an estimated 60 to 65 minutes of one core), which CI's 90
# minutes cannot hold beside the builds and the half-hour lab; make miri runs them (run it for
# a change to the code they test).
MIRI_CI_SKIP := pmap::tests peer::blkif::session peer::share::session peer::share::pattern \
	peer::vchan::channel peer::vchan::concurrent_tests peer::vchan::session peer::vchan::search \
	peer::vchan::layout peer::driver

miri-ci-grantsvc: miri-setup
	+$(MIRI_ENV) $(CARGO) +nightly miri test -p grantsvc --lib --bins --target-dir target/miri-ci \
		-- $(addprefix --skip ,$(MIRI_CI_SKIP)) $(MIRI_TEST_ARGS)

# The quick Miri check (a few minutes), two at a time.
miri-ci:
	$(MAKE) -j2 --output-sync=line --no-print-directory miri-ci-grantsvc miri-xenstore

# make test's single-threaded stages, the fuzz smoke (each target runs on one thread) and the
# quick Miri check, packed the same way.
single-threaded-checks:
	$(MAKE) -j2 --output-sync=line --no-print-directory fuzz-smoke miri-ci-grantsvc miri-xenstore

# Each target of FUZZ_TARGETS ("directory:target") runs FUZZ_SECONDS, or FUZZ_RUNS executions when
# that is set (the README's figures: FUZZ_RUNS=10000000, one target at a time under nice -n 19);
# a crash fails the run.
FUZZ_TARGETS := xenstore/fuzz:parser xenstore/fuzz:replies xenstore/fuzz:ring_indices \
	tests/fuzz:blkif_requests tests/fuzz:blkif_frontend_nodes tests/fuzz:share_frontend_nodes \
	tests/fuzz:vchan_layout tests/fuzz:vchan_channel tests/fuzz:vchan_commands tests/fuzz:vchan_search
FUZZ_SECONDS ?= 600
FUZZ_RUNS ?=
FUZZ_LIMIT = $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS))
fuzz: nightly-tools
	+@for entry in $(FUZZ_TARGETS); do \
		dir=$${entry%%:*}; target=$${entry#*:}; \
		echo "fuzz: $$dir $$target ($(FUZZ_LIMIT))"; \
		(cd $$dir && $(CARGO) +nightly fuzz run --fuzz-dir . $$target -- $(FUZZ_LIMIT) -print_final_stats=1 2>&1 | \
			grep -E '^(stat::number_of_executed_units|==[0-9]+==|SUMMARY|Done)' ) || exit 1; \
	done

# What make test (and so CI) runs: 15 s per target, enough for a regression to show (ten
# targets, 150 s of fuzzing, beside the longer Miri part).
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=15 FUZZ_RUNS=

fresh-check: packages
	tests/lab/fresh-check

# Once per recipe per machine: a stamp under ~/.cache/grantsvc-lab/fresh-check/ records a pass.
fresh-check-if-changed: packages
	tests/lab/fresh-check --if-changed

test: host-test clippy fmt-check image-check single-threaded-checks fresh-check-if-changed lab

# The demo runs the service with no lab word: the production image, as users run it.
demo: kernel peer
	GRANTSVC_KERNEL=$(KERNEL) tests/lab/run --demo

# Created paused, admitted to xenstored's @releaseDomain watch events (XSA-115 sends them to an
# unprivileged domain only when the special node's permissions admit it: grantsvc then learns of
# a dead peer at once, and otherwise within its event-channel liveness period), then started.
run: kernel
	xl create -p domain.cfg
	xenstore-chmod @releaseDomain n0 r$$(xl domid grantsvc)
	xl unpause grantsvc

clean:
	$(CARGO) clean
