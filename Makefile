# quorumfs build. `make` builds bin/quorumfs and bin/mount.quorumfs; see
# README.md for run/test. Two object trees: build/rel (optimised, the shipped
# binaries) and build/asan (AddressSanitizer + UBSan, for unit tests and sim).

CC ?= cc
PYTHON := /usr/bin/python3
PKGS := fuse3 libuv zlib openssl

DEB_PACKAGES := gcc make pkg-config libfuse3-dev fuse3 libuv1-dev libssl-dev zlib1g-dev \
	libbsd-dev libcmocka-dev python3-pytest inotify-tools attr nftables iproute2 psmisc \
	openssl util-linux

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Werror
BASE_CFLAGS := -std=gnu11 $(WARN) -MMD -MP -D_GNU_SOURCE -g -pthread
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LIBS = $(PKG_LIBS) -lcmocka -pthread
REL_CFLAGS := $(BASE_CFLAGS) -O2
ASAN_CFLAGS := $(BASE_CFLAGS) -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
TSAN_CFLAGS := $(BASE_CFLAGS) -O1 -fsanitize=thread

CORE_SRCS := $(wildcard common/*.c store/*.c raft/*.c)
FS_SRCS := $(wildcard fs/*.c)
HELPER_SRCS := $(wildcard mount-helper/*.c)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
SIM_SRCS := $(wildcard tests/sim/*.c)

obj = $(patsubst %.c,build/$(1)/%.o,$(2))

# The core is linked as an archive: a binary pulls in only what it uses.
REL_CORE := build/rel/libqfs.a
ASAN_CORE := build/asan/libqfs.a
UNIT_BINS := $(patsubst tests/unit/%.c,build/asan/tests/unit/%,$(UNIT_SRCS))
SIM_BIN := $(if $(SIM_SRCS),build/asan/tests/sim/sim)
SEEDS ?= 20000

.SECONDEXPANSION:
.SECONDARY:
.PHONY: all deps test unit sim e2e run bench format tsan install clean
all: bin/quorumfs bin/mount.quorumfs

build/rel/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

build/%/libqfs.a: $$(call obj,$$*,$$(CORE_SRCS))
	@rm -f $@
	ar rcs $@ $^

build/tsan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(TSAN_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

bin/quorumfs: $(call obj,rel,$(FS_SRCS)) $(REL_CORE)
	@mkdir -p bin
	$(CC) $(REL_CFLAGS) -o $@ $^ $(LIBS)

bin/mount.quorumfs: $(call obj,rel,$(HELPER_SRCS))
	@mkdir -p bin
	$(CC) $(REL_CFLAGS) -o $@ $^

build/asan/tests/unit/%: build/asan/tests/unit/%.o $(ASAN_CORE)
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(LIBS)

build/asan/tests/sim/sim: $(call obj,asan,$(SIM_SRCS)) $(ASAN_CORE)
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(LIBS)

# ThreadSanitizer build of the daemon, for the FUSE-to-loop hand-off.
tsan: $(call obj,tsan,$(FS_SRCS)) build/tsan/libqfs.a
	@mkdir -p bin
	$(CC) $(TSAN_CFLAGS) -o bin/quorumfs-tsan $^ $(LIBS)

# Installs the Debian packages that are missing (apt-get update once, only
# when something is missing).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

sim: $(SIM_BIN)
	$(if $(SIM_BIN),$(SIM_BIN) --seeds $(SEEDS),@echo "no simulator yet")

e2e: all
	$(PYTHON) -m pytest -q tests/e2e

test: deps
	$(MAKE) all unit
	$(MAKE) sim SEEDS=2000
	$(MAKE) e2e

run: deps
	$(MAKE) all
	contrib/run-local.sh

# etcd is installed for the side-by-side benchmark only, never for quorumfs.
bench: deps
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="etcd-server etcd-client"
	$(MAKE) all
	contrib/bench/run.sh

format:
	clang-format -i $(CORE_SRCS) $(FS_SRCS) $(HELPER_SRCS) $(UNIT_SRCS) $(SIM_SRCS) \
		$(wildcard common/*.h store/*.h raft/*.h fs/*.h tests/*/*.h)

# quorumfs on PATH, mount.quorumfs where mount(8) looks for helpers.
PREFIX ?= /usr/local
install: all
	install -D -m 755 bin/quorumfs $(DESTDIR)$(PREFIX)/bin/quorumfs
	install -D -m 755 bin/mount.quorumfs $(DESTDIR)/sbin/mount.quorumfs
	install -d $(DESTDIR)/etc/systemd/system
	sed 's#/usr/local/bin/#$(PREFIX)/bin/#' contrib/systemd/quorumfs@.service \
		> $(DESTDIR)/etc/systemd/system/quorumfs@.service

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
