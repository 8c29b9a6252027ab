# ramflow - the two commands of the README, plus the pieces they use.
#
#   make demo   install what is missing, build, run a live migration demo
#   make check  install what is missing, build, run every test (also under
#               AddressSanitizer + UBSan, and under ThreadSanitizer) and the
#               fuzzers briefly
#
# Everything comes from Debian packages; nothing else is downloaded.

DEPS := meson ninja-build pkg-config gcc clang libc6-dev \
        zlib1g-dev libzstd-dev libdeflate-dev libisal-dev libcmocka-dev \
        libjansson-dev libxxhash-dev libgnutls28-dev gnutls-bin python3 gzip \
        xz-utils iproute2 jq
# Only the benchmarks (make bench) need these.
BENCH_DEPS := iperf3 gnuplot-nox

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 20
RAMFLOW    := $(BUILD)/src/control/ramflow

.PHONY: all deps bench-deps install-packages build demo check check-release \
        check-asan check-tsan check-fuzz bench clean

all: build

# Installs the Debian packages that are missing (apt-get update first when
# the package lists are empty or an install fails on stale lists).
deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(DEPS)"

bench-deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(BENCH_DEPS)"

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

check-fuzz: deps
	@[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) \
	  --buildtype=debugoptimized -Dfuzzing=true -Dtests=false \
	  -Db_lundef=false
	ninja -C $(FUZZ_BUILD)
	@for f in $(FUZZ_BUILD)/tests/fuzz/fuzz_*; do \
	  [ -f "$$f" ] && [ -x "$$f" ] || continue; \
	  log="$$f.log"; \
	  if ! "$$f" -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	      >"$$log" 2>&1; then \
	    tail -n 60 "$$log"; echo "FAIL: $$(basename $$f)"; exit 1; fi; \
	  echo "fuzz $$(basename $$f): $$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$$log"), no crash"; \
	done

bench: build bench-deps
	bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
