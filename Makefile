# mqtt2zeebe - plain GNU Make + pkg-config.
#
#   make                      build build/mqtt2zeebe
#   make test                 unit + integration tests (what CI runs)
#   make SANITIZE=1 test      the same under ASan + UBSan (build-asan/)
#   make deps                 apt-get the Debian packages we build/test with
#   make demo                 local broker + stand-in gateway + token endpoint + agent
#   make install              DESTDIR/prefix honoured
#   make bench                benchmark (see bench/)
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
PKG_CONFIG ?= pkg-config
PROTOC_C ?= protoc-c
prefix ?= /usr/local
bindir ?= $(prefix)/bin
sysconfdir ?= /etc
localstatedir ?= /var
unitdir ?= /lib/systemd/system

ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build$(if $(TOOLCHAIN),-$(TOOLCHAIN))$(if $(filter 1,$(STATIC)),-static)
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

PKGS := grpc libprotobuf-c libmosquitto inih libcjson
PKG_STATIC := $(if $(filter 1,$(STATIC)),--static)
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) $(PKG_STATIC) --libs $(PKGS) 2>/dev/null)
MBEDTLS_LIBS ?= -lmbedtls -lmbedx509 -lmbedcrypto

WARN := -Wall -Wextra -Wstrict-prototypes -Wshadow -Wformat=2 -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif
CFLAGS ?= -O2 -g
override CFLAGS += -std=gnu11 $(WARN) $(SAN_FLAGS) -pthread -D_GNU_SOURCE \
	-DM2Z_VERSION='"$(VERSION)"' -Isrc -Iplatform -I$(BUILD)/gen $(PKG_CFLAGS)
override LDFLAGS += $(SAN_FLAGS) -pthread $(if $(filter 1,$(STATIC)),-static)
LDLIBS := $(PKG_LIBS) $(MBEDTLS_LIBS) -lm

SRC := $(wildcard src/*.c platform/*_mbedtls.c platform/*_linux.c)
SRC := $(filter-out src/main.c,$(sort $(SRC)))
GEN := $(BUILD)/gen/gateway.pb-c.c
OBJ := $(patsubst %.c,$(BUILD)/%.o,$(SRC)) $(BUILD)/gen/gateway.pb-c.o
LIB := $(BUILD)/libm2z.a
BIN := $(BUILD)/mqtt2zeebe

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all test check unit integration deps demo install clean bench asan
all: $(BIN)

$(BUILD)/gen/gateway.pb-c.c $(BUILD)/gen/gateway.pb-c.h: proto/gateway.proto
	@mkdir -p $(BUILD)/gen
	@echo "  PROTOC  $<"
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/gateway.pb-c.o: $(BUILD)/gen/gateway.pb-c.c
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(filter-out -Wshadow,$(CFLAGS)) -c -o $@ $<

$(BUILD)/%.o: %.c $(BUILD)/gen/gateway.pb-c.h
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && $(CROSS_COMPILE)ar rcs $@ $^

$(BIN): $(BUILD)/src/main.o $(LIB)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) $(shell $(PKG_CONFIG) --libs cmocka)

-include $(OBJ:.o=.d) $(BUILD)/src/main.d

unit: $(UNIT_BIN)
	$(Q)set -e; for t in $(UNIT_BIN); do echo "== $$t"; $(TEST_WRAPPER) $$t; done

integration: $(BIN)
	$(Q)M2Z_BIN=$(abspath $(BIN)) /usr/bin/python3 -m pytest -q tests/integration $(PYTEST_ARGS)

test: unit integration
check: test

asan:
	$(MAKE) SANITIZE=1 test

deps:
	bash scripts/deps.sh $(DEPS_ARGS)

demo: $(BIN)
	bash scripts/demo.sh $(abspath $(BIN))

bench: $(BIN)
	bash bench/run.sh $(abspath $(BIN))

install: $(BIN)
	install -d $(DESTDIR)$(bindir) $(DESTDIR)$(sysconfdir)/mqtt2zeebe $(DESTDIR)$(unitdir)
	install -m 0755 $(BIN) $(DESTDIR)$(bindir)/mqtt2zeebe
	[ -e $(DESTDIR)$(sysconfdir)/mqtt2zeebe/mqtt2zeebe.ini ] || \
		install -m 0640 conf/mqtt2zeebe.ini $(DESTDIR)$(sysconfdir)/mqtt2zeebe/mqtt2zeebe.ini
	sed 's|@bindir@|$(bindir)|g; s|@sysconfdir@|$(sysconfdir)|g' conf/mqtt2zeebe.service > $(DESTDIR)$(unitdir)/mqtt2zeebe.service
	install -d -m 0700 $(DESTDIR)$(localstatedir)/lib/mqtt2zeebe

clean:
	rm -rf build build-*
