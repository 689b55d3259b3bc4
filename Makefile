# mqtt2zeebe - plain GNU Make + pkg-config.
#
#   make                      build build/mqtt2zeebe
#   make test                 unit + integration tests (what CI runs)
#   make SANITIZE=1 test      the same under ASan + UBSan (build-asan/)
#   make deps                 apt-get the Debian packages we build/test with
#   make demo                 local broker + stand-in gateway + token endpoint + agent
#   make install              DESTDIR/prefix honoured
#   make deb                  Debian package (TOOLCHAIN=..., STATIC=1); make test-deb
#   make man                  regenerate man/mqtt2zeebe.ini.5's KEYS from src/conf.c
#   make bench                benchmark (see bench/)
#   make fuzz                 each fuzz/fuzz_*.c for FUZZ_SECONDS (clang, libFuzzer, ASan+UBSan)
#   make TOOLCHAIN=aarch64-linux-gnu   cross build (see toolchains/)
# Variables honoured: CC CFLAGS LDFLAGS PKG_CONFIG CROSS_COMPILE prefix DESTDIR V=1
# WERROR=1 (CI), STATIC=1.

VERSION := 0.1.0

ifneq ($(TOOLCHAIN),)
include toolchains/$(TOOLCHAIN).mk
endif

# make predefines CC, so "CC ?=" would never pick the cross compiler.
ifeq ($(origin CC),default)
CC := $(CROSS_COMPILE)gcc
endif
# Likewise AR (make predefines it as "ar").
ifeq ($(origin AR),default)
AR := $(CROSS_COMPILE)ar
endif
PKG_CONFIG ?= pkg-config
PROTOC_C ?= protoc-c
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
prefix ?= /usr/local
bindir ?= $(prefix)/bin
sysconfdir ?= /etc
localstatedir ?= /var
unitdir ?= /lib/systemd/system
sysusersdir ?= /usr/lib/sysusers.d
mandir ?= $(prefix)/share/man

ifeq ($(FUZZ),1)
# libFuzzer: the project's sources are instrumented (fuzzer-no-link); only
# the harnesses link the fuzzer's main. Set by "make fuzz", not by hand.
BUILD ?= build-fuzz
CC := $(FUZZ_CC)
SAN_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
export UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1
else ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# Tests (and the agents they start) inherit these.
export LSAN_OPTIONS := suppressions=$(abspath tests/lsan.supp):print_suppressions=0
export UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1
else
BUILD ?= build$(if $(TOOLCHAIN),-$(TOOLCHAIN))$(if $(filter 1,$(STATIC)),-static)
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

PKGS := grpc libprotobuf-c libcjson libmicrohttpd
PKG_STATIC := $(if $(filter 1,$(STATIC)),--static)
STATIC_DEPS_ON := $(filter 1,$(STATIC))
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
# STATIC=1: libmicrohttpd comes from static-deps.sh without HTTPS, so not
# from pkg-config --static (which would add GnuTLS and its dependencies).
PKG_LIBS := $(shell $(PKG_CONFIG) $(PKG_STATIC) --libs $(if $(STATIC_DEPS_ON),$(filter-out libmicrohttpd,$(PKGS)),$(PKGS)) 2>/dev/null)$(if $(STATIC_DEPS_ON), -lmicrohttpd)
MBEDTLS_LIBS ?= -lmbedtls -lmbedx509 -lmbedcrypto

WARN := -Wall -Wextra -Wstrict-prototypes -Wshadow -Wformat=2 -Wconversion -Wsign-conversion \
	-Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif
CFLAGS ?= -O2 -g
# _FILE_OFFSET_BITS=64: 64-bit off_t/ino_t on 32-bit targets (armhf). Without
# it readdir() fails with EOVERFLOW on 64-bit directory cookies (armhf under
# qemu on a 64-bit host, NFS) and spool files are capped at 2 GiB.
override CFLAGS += -std=gnu11 $(WARN) $(SAN_FLAGS) -pthread -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
	-DM2Z_VERSION='"$(VERSION)"' -Isrc -Iplatform -I$(BUILD)/gen $(PKG_CFLAGS)
override LDFLAGS += $(SAN_FLAGS) -pthread $(if $(filter 1,$(STATIC)),-static)
LDLIBS := $(PKG_LIBS) $(MBEDTLS_LIBS) -lm

# STATIC=1: Debian ships no libcjson.a (nor an HTTP-only libmicrohttpd.a);
# scripts/static-deps.sh builds them from their Debian source packages into
# $(STATIC_DEPS)/lib. gRPC core is C++ inside, and only its .so records
# libstdc++.
ifeq ($(STATIC),1)
STATIC_DEPS := $(BUILD)/static-deps
# --gc-sections: drop the unreferenced sections the static libraries bring
# (0.4 MB of text; README "Benchmark", static peak RSS).
override LDFLAGS += -L$(STATIC_DEPS)/lib -Wl,--gc-sections
LDLIBS += -ldl -lstdc++
endif

SRC := $(wildcard src/*.c platform/*_mbedtls.c platform/*_linux.c)
SRC := $(filter-out src/main.c,$(sort $(SRC)))
GEN := $(BUILD)/gen/gateway.pb-c.c
OBJ := $(patsubst %.c,$(BUILD)/%.o,$(SRC)) $(BUILD)/gen/gateway.pb-c.o
LIB := $(BUILD)/libm2z.a
BIN := $(BUILD)/mqtt2zeebe

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all test check unit integration deps demo install clean bench asan sizes test-qemu man deb test-deb fuzz fuzz-build fuzz-run
all: $(BIN)

$(BUILD)/gen/gateway.pb-c.c $(BUILD)/gen/gateway.pb-c.h: proto/gateway.proto
	@mkdir -p $(BUILD)/gen
	@echo "  PROTOC  $<"
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/gateway.pb-c.o: $(BUILD)/gen/gateway.pb-c.c
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(filter-out -Wshadow -Wconversion -Wsign-conversion,$(CFLAGS)) -c -o $@ $<

$(BUILD)/%.o: %.c $(BUILD)/gen/gateway.pb-c.h
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(BIN): $(BUILD)/src/main.o $(LIB)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

ifeq ($(STATIC),1)
$(BIN): | $(STATIC_DEPS)/.m2z-static-deps
$(STATIC_DEPS)/.m2z-static-deps: scripts/static-deps.sh
	$(Q)bash scripts/static-deps.sh $(abspath $(STATIC_DEPS)) $(CC)
endif

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) $(shell $(PKG_CONFIG) --libs cmocka)

# Test-only driver for oauth.c (tests/integration/test_oauth.py).
$(BUILD)/tests/oauth_probe: tests/tools/oauth_probe.c $(LIB)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# Prints conf_print_reference() (make man, tests/integration/test_man.py).
$(BUILD)/tests/conf_reference: tests/tools/conf_reference.c $(LIB)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

-include $(OBJ:.o=.d) $(BUILD)/src/main.d

unit: $(UNIT_BIN)
	$(Q)set -e; for t in $(UNIT_BIN); do echo "== $$t"; $(TEST_WRAPPER) $$t; done

# Cross builds (toolchains/*.mk set QEMU) run target binaries through
# qemu-user called explicitly; binfmt_misc is not assumed. M2Z_BIN is then a
# wrapper that execs qemu, so signals sent to it reach the daemon. Other
# target helpers (tests/oauth_probe) must be run as $M2Z_QEMU <path> (empty natively).
ifneq ($(QEMU),)
TEST_WRAPPER ?= $(QEMU)
M2Z_RUN := $(BUILD)/mqtt2zeebe-run
$(M2Z_RUN): $(BIN)
	$(Q)printf '#!/bin/sh\nexec %s %s "$$@"\n' '$(QEMU)' '$(abspath $(BIN))' > $@ && chmod +x $@
endif

integration: $(BIN) $(M2Z_RUN) $(BUILD)/tests/oauth_probe $(BUILD)/tests/conf_reference
	$(Q)M2Z_BIN=$(abspath $(or $(M2Z_RUN),$(BIN))) M2Z_QEMU='$(QEMU)' /usr/bin/python3 -m pytest -q tests/integration $(PYTEST_ARGS)

test: unit integration
check: test
# make TOOLCHAIN=... test-qemu: unit tests + integration (PYTEST_ARGS selects) under qemu.
test-qemu: test

asan:
	$(MAKE) SANITIZE=1 test

# Fuzzing (README "Fuzzing"): fuzz/fuzz_NAME.c is one libFuzzer target; its
# seeds are fuzz/corpus/NAME/ (read only: new inputs go to
# build-fuzz/corpus/NAME/, crashes to build-fuzz/crash-NAME-*).
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

$(BUILD)/fuzz/%: fuzz/%.c $(LIB)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

fuzz-build: $(FUZZ_BIN)

fuzz-run: $(FUZZ_BIN)
	$(Q)failed=; for b in $(FUZZ_BIN); do n=$${b##*/fuzz_}; \
		mkdir -p $(BUILD)/corpus/$$n fuzz/corpus/$$n; echo "== $$b ($(FUZZ_SECONDS)s)"; \
		if $$b -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
			-artifact_prefix=$(abspath $(BUILD))/crash-$$n- $(BUILD)/corpus/$$n fuzz/corpus/$$n \
			2>$(BUILD)/fuzz-$$n.log; then \
			grep -E '^stat::number_of_executed_units' $(BUILD)/fuzz-$$n.log; \
		else tail -40 $(BUILD)/fuzz-$$n.log; failed="$$failed $$n"; fi; done; \
		[ -z "$$failed" ] || { echo "fuzz: findings in:$$failed (inputs: $(BUILD)/crash-*)"; exit 1; }

fuzz:
	$(MAKE) FUZZ=1 fuzz-run

deps:
	bash scripts/deps.sh $(DEPS_ARGS)

demo: $(BIN)
	bash scripts/demo.sh $(abspath $(BIN))

# Stripped sizes: x86_64/aarch64/armhf/armel x dynamic/static, riscv64 dynamic (README.md, "Sizes").
sizes:
	bash scripts/sizes.sh

# Benchmark tools: the fast C stand-in gateway and the "limit" program.
$(BUILD)/m2z-fast-gateway: bench/fast_gateway.c $(BUILD)/gen/gateway.pb-c.o
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/m2z-limit: bench/limit.c $(LIB)
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench: $(BIN) $(BUILD)/m2z-fast-gateway $(BUILD)/m2z-limit
	$(MAKE) STATIC=1 all
	/usr/bin/python3 bench/bench.py --bin $(abspath $(BIN)) --build $(abspath $(BUILD)) \
		--static-bin $(abspath build-static/mqtt2zeebe)

# Live install (DESTDIR empty): also creates the mqtt2zeebe user through
# systemd-sysusers and gives it read access to the config. An existing
# config is never overwritten. Packagers: DESTDIR=... and run sysusers later.
install: $(BIN)
	install -d $(DESTDIR)$(bindir) $(DESTDIR)$(unitdir) $(DESTDIR)$(sysusersdir)
	install -d -m 0750 $(DESTDIR)$(sysconfdir)/mqtt2zeebe
	install -m 0755 $(BIN) $(DESTDIR)$(bindir)/mqtt2zeebe
	[ -e $(DESTDIR)$(sysconfdir)/mqtt2zeebe/mqtt2zeebe.ini ] || \
		install -m 0640 conf/mqtt2zeebe.ini $(DESTDIR)$(sysconfdir)/mqtt2zeebe/mqtt2zeebe.ini
	sed 's|@bindir@|$(bindir)|g; s|@sysconfdir@|$(sysconfdir)|g' conf/mqtt2zeebe.service > $(BUILD)/mqtt2zeebe.service
	install -m 0644 $(BUILD)/mqtt2zeebe.service $(DESTDIR)$(unitdir)/mqtt2zeebe.service
	[ -e $(DESTDIR)$(sysconfdir)/mqtt2zeebe/env ] || \
		install -m 0600 conf/mqtt2zeebe.env $(DESTDIR)$(sysconfdir)/mqtt2zeebe/env
	install -m 0644 conf/mqtt2zeebe.sysusers $(DESTDIR)$(sysusersdir)/mqtt2zeebe.conf
	install -d -m 0700 $(DESTDIR)$(localstatedir)/lib/mqtt2zeebe
	install -d $(DESTDIR)$(mandir)/man8 $(DESTDIR)$(mandir)/man5
	sed 's|@VERSION@|$(VERSION)|g' man/mqtt2zeebe.8 > $(BUILD)/mqtt2zeebe.8
	sed 's|@VERSION@|$(VERSION)|g' man/mqtt2zeebe.ini.5 > $(BUILD)/mqtt2zeebe.ini.5
	install -m 0644 $(BUILD)/mqtt2zeebe.8 $(DESTDIR)$(mandir)/man8/mqtt2zeebe.8
	install -m 0644 $(BUILD)/mqtt2zeebe.ini.5 $(DESTDIR)$(mandir)/man5/mqtt2zeebe.ini.5
	if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then \
		systemd-sysusers $(sysusersdir)/mqtt2zeebe.conf && \
		chgrp mqtt2zeebe $(sysconfdir)/mqtt2zeebe $(sysconfdir)/mqtt2zeebe/mqtt2zeebe.ini && \
		chown mqtt2zeebe:mqtt2zeebe $(localstatedir)/lib/mqtt2zeebe; fi

# man/mqtt2zeebe.ini.5's KEYS section from the option table in src/conf.c
# (committed; tests/integration/test_man.py fails when it is stale).
man: $(BUILD)/tests/conf_reference
	$(Q)$(TEST_WRAPPER) $(BUILD)/tests/conf_reference | /usr/bin/python3 scripts/manref.py

# A .deb for the target (TOOLCHAIN=aarch64-linux-gnu etc.; STATIC=1 gives
# mqtt2zeebe-static with no library dependencies) from the install rule
# above, with dpkg-shlibdeps/dpkg-gencontrol/dpkg-deb (packaging/deb/).
# TOOLCHAIN=generic: set DEB_ARCH (and use STATIC=1 unless the sysroot has
# the DEBIAN/shlibs and symbols files scripts/sysroot.sh gathers).
DEB_ARCH ?= $(if $(TOOLCHAIN),,$(shell dpkg --print-architecture))
deb: $(BIN)
	$(Q)[ -n "$(DEB_ARCH)" ] || { echo "make deb: set DEB_ARCH (the Debian architecture) for TOOLCHAIN=$(TOOLCHAIN)" >&2; exit 2; }
	$(Q)rm -rf $(BUILD)/deb/root
	$(Q)$(MAKE) -s install -o $(BIN) DESTDIR=$(abspath $(BUILD))/deb/root prefix=/usr
	$(Q)bash packaging/deb/build.sh $(BUILD) $(VERSION) $(DEB_ARCH) '$(CROSS_COMPILE)' \
		'$(SYSROOT)' '$(TRIPLET)' $(if $(filter 1,$(STATIC)),static)

# The packages installed into fresh Debian roots (tests/package/test_deb.py):
# arm64 under qemu, amd64 install + upgrade with its maintainer scripts.
test-deb:
	$(Q)/usr/bin/python3 -m pytest -q tests/package $(PYTEST_ARGS)

clean:
	rm -rf build build-*
