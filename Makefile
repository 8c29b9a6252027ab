# ramflow - the two commands of the README, plus the pieces they use.
#
#   make demo   install what is missing, build, run a live migration demo
#   make check  install what is missing, build, run every test (also under
#               AddressSanitizer + UBSan, and under ThreadSanitizer) and the
#               fuzzers briefly
#
# Outside make check: `make fuzz` (every fuzzer for FUZZ_HOURS, default 1
# hour each; FUZZ_SECONDS=N overrides) and `make soak` (a test VM migrated
# back and forth 50 times under LeakSanitizer; tests/soak/README.md).
#
# Everything comes from Debian packages; nothing else is downloaded.

DEPS := meson ninja-build pkg-config gcc clang libc6-dev \
        zlib1g-dev libzstd-dev libdeflate-dev libisal-dev libcmocka-dev \
        libjansson-dev libxxhash-dev libgnutls28-dev gnutls-bin python3 gzip \
        xz-utils iproute2 jq socat
# Only the benchmarks (make bench) need these; bench-deps also installs
# QEMU (10 from bookworm-backports where reachable, else bookworm's 7.2)
# for `ramflow bench --compare qemu`: bench/lib/install-qemu.sh.
BENCH_DEPS := iperf3 gnuplot-nox

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
SOAK_BUILD ?= build-soak
# make check: each fuzzer this long, 5 targets (tests/fuzz/README.md).
FUZZ_SECONDS ?= 12
# make fuzz: each fuzzer FUZZ_HOURS, unless FUZZ_SECONDS is given.
FUZZ_HOURS ?= 1
ifeq ($(filter command line environment,$(origin FUZZ_SECONDS)),)
FUZZ_LONG_SECONDS = $(shell awk 'BEGIN { print int($(FUZZ_HOURS) * 3600) }')
else
FUZZ_LONG_SECONDS = $(FUZZ_SECONDS)
endif
RAMFLOW    := $(BUILD)/src/control/ramflow

.PHONY: all deps bench-deps install-packages build demo check check-release \
        check-asan check-tsan check-fuzz fuzz fuzz-build soak bench clean

all: build

# Installs the Debian packages that are missing (apt-get update first when
# the package lists are empty or an install fails on stale lists).
deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(DEPS)"

bench-deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(BENCH_DEPS)"
	@bench/lib/install-qemu.sh

install-packages:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then \
	    apt-get update; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y $$missing; }; \
	fi

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) --buildtype=release
	ninja -C $(BUILD)

demo: build
	$(RAMFLOW) demo

check: check-release check-asan check-tsan check-fuzz
	@tests/summary.sh $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)

check-release: build
	meson test -C $(BUILD) --print-errorlogs --num-processes 1

check-asan: deps
	@[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) \
	  --buildtype=debugoptimized -Db_sanitize=address,undefined \
	  -Db_lundef=false
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 1 \
	  --timeout-multiplier 3

# ThreadSanitizer: the unit and integration tests (the ramflow processes
# the integration scripts start are instrumented too), except the suite
# "slow" (bench-quick: netns set-up and calibration around the same
# migrations e2e runs; see tests/integration/meson.build).  Every process
# writes its reports to $(TSAN_LOGS)/tsan.PID: a script that expects a
# process to fail still cannot hide a report, since any file there fails
# the target.  Suppressions, each with its reason: tests/tsan.supp.
TSAN_LOGS := $(CURDIR)/$(TSAN_BUILD)/tsan-logs
check-tsan: deps
	@[ -f $(TSAN_BUILD)/build.ninja ] || meson setup $(TSAN_BUILD) \
	  --buildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false
	ninja -C $(TSAN_BUILD)
	@rm -rf $(TSAN_LOGS) && mkdir -p $(TSAN_LOGS)
	@start=$$(date +%s); \
	TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 \
	  suppressions=$(CURDIR)/tests/tsan.supp log_path=$(TSAN_LOGS)/tsan" \
	  meson test -C $(TSAN_BUILD) --print-errorlogs --num-processes 1 \
	  --timeout-multiplier 3 --no-suite slow; rc=$$?; \
	echo "check-tsan: tests took $$(( $$(date +%s) - start )) s"; \
	if ls $(TSAN_LOGS)/tsan.* >/dev/null 2>&1; then \
	  for f in $(TSAN_LOGS)/tsan.*; do echo "--- $$f"; cat "$$f"; done; \
	  echo "FAIL: ThreadSanitizer reports (above, in $(TSAN_LOGS))"; \
	  exit 1; fi; \
	exit $$rc

# The fuzzers (tests/fuzz/README.md), built with clang, libFuzzer, ASan
# and UBSan; each runs FUZZ_SECONDS from the committed and generated seeds.
fuzz-build: deps
	@[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) \
	  --buildtype=debugoptimized -Dfuzzing=true -Dtests=false \
	  -Db_lundef=false
	ninja -C $(FUZZ_BUILD)

check-fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Not part of make check: every fuzzer for an hour (FUZZ_HOURS=1), then
# the exec count of each.  What they find stays in
# $(FUZZ_BUILD)/fuzz-corpus for the next run.
fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_LONG_SECONDS)

# Not part of make check: the 50-cycle soak (tests/soak/README.md), built
# with AddressSanitizer and LeakSanitizer.
soak: deps
	@[ -f $(SOAK_BUILD)/build.ninja ] || meson setup $(SOAK_BUILD) \
	  --buildtype=debugoptimized -Db_sanitize=address,undefined \
	  -Db_lundef=false -Dtests=false
	ninja -C $(SOAK_BUILD) tests/soak/soak
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  tests/soak/soak.sh $(SOAK_BUILD)/tests/soak/soak

bench: build bench-deps
	bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) $(SOAK_BUILD)
