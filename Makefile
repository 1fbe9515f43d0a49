# SPDX-License-Identifier: MIT
# The two commands a user needs: `make run` and `make test`. Both install the
# Debian packages they need first (apt-get, with sudo when not root).
DEB_PACKAGES := g++ cmake ninja-build pkg-config liburcu-dev libcli11-dev \
                nlohmann-json3-dev libfmt-dev libgtest-dev libgmock-dev \
                librapidcheck-dev libbenchmark-dev libboost-context-dev python3 xz-utils linux-source-6.12 parallel \
                clang-14 gnuplot-nox
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
JOBS ?= $(shell nproc)
RUN_ARGS ?=
# The kernel tree whose own TDP MMU is built as the oracle (oracle/): Debian's
# linux-source-6.12 tarball unless you point it at your tree.
ORACLE_TREE ?= /usr/src/linux-source-6.12.tar.xz

# ThreadSanitizer where OS threads run at once. Not the explorer's tests: its
# virtual threads are fibers on one OS thread that hand over with
# synchronising switches (__tsan_switch_to_fiber with flags 0), so TSan
# could never report a race there; the explorer itself looks for them.
TSAN_TESTS := test_concurrent test_tdx test_sync test_litmus

.PHONY: deps run test oracle build-release build-asan build-tsan bench fuzz clean

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build-release: deps
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS)

build-asan: deps
	cmake --preset asan -DMIRRORMMU_KERNEL_TREE=$(ORACLE_TREE) >/dev/null
	cmake --build --preset asan -j $(JOBS)

run: build-release
	./build/release/mirrormmu run $(RUN_ARGS)

build-tsan: deps
	cmake --preset tsan >/dev/null
	cmake --build --preset tsan -j $(JOBS) --target $(TSAN_TESTS)

# Every test under ASan+UBSan, then the concurrent ones (real threads, the
# deterministic engine, the module under contention) under TSan; not the
# comparisons of reduced and unreduced searches (scenarios, small and random
# programs) and of fast-forwarding, which run one virtual thread at a time
# (fibers on one OS thread) for minutes and have nothing for TSan to see
# that the engine tests lack.
test: build-asan build-tsan
	ctest --preset asan -j $(JOBS)
	TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  ctest --test-dir build/tsan -j $(JOBS) --output-on-failure -R '^(concurrent|tdx|sync|litmus)\.'


# The kernel's own TDP MMU from ORACLE_TREE, and the tests that compare it
# with the model (also part of `make test`, under ASan+UBSan).
oracle: deps
	cmake --preset release -DMIRRORMMU_KERNEL_TREE=$(ORACLE_TREE) >/dev/null
	cmake --build --preset release -j $(JOBS) --target test_oracle mirrormmu
	ctest --test-dir build/release -j $(JOBS) --output-on-failure -R '^oracle\.'

# libFuzzer (clang-14, ASan+UBSan) on scenario files, replay strings and the
# command line's parser, FUZZ_SECONDS each, from the corpus in fuzz/corpus
# (new inputs go to build/fuzz/corpus, crashes to build/fuzz/crash-*).
FUZZ_SECONDS ?= 60
fuzz: deps
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS) --target fuzz_scenario fuzz_schedule fuzz_cli
	@for t in scenario schedule cli; do \
	  mkdir -p build/fuzz/corpus/$$t; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  ./build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
	    -artifact_prefix=build/fuzz/ -print_final_stats=1 build/fuzz/corpus/$$t fuzz/corpus/$$t \
	    >build/fuzz/$$t.log 2>&1 || { tail -n 40 build/fuzz/$$t.log; exit 1; }; \
	  grep -E '^stat::number_of_executed_units|^Done' build/fuzz/$$t.log; \
	done

bench: deps
	cmake --preset release -DMIRRORMMU_BENCH=ON >/dev/null
	cmake --build --preset release -j $(JOBS)
	./build/release/mirrormmu bench
	./build/release/bench/mirrormmu_bench

clean:
	rm -rf build
