# The two commands a user needs: `make run` and `make test`. Both install the
# Debian packages they need first (apt-get, with sudo when not root).
DEB_PACKAGES := g++ cmake ninja-build pkg-config liburcu-dev libcli11-dev \
                nlohmann-json3-dev libfmt-dev libgtest-dev libgmock-dev \
                librapidcheck-dev libbenchmark-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
JOBS ?= $(shell nproc)
RUN_ARGS ?=

.PHONY: deps run test build-release build-asan bench clean

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
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)

run: build-release
	./build/release/mirrormmu run $(RUN_ARGS)

test: build-asan
	ctest --preset asan -j $(JOBS)

bench: deps
	cmake --preset release -DMIRRORMMU_BENCH=ON >/dev/null
	cmake --build --preset release -j $(JOBS)
	./build/release/mirrormmu bench

clean:
	rm -rf build
