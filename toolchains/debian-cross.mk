# Shared by the Debian cross toolchains (aarch64-linux-gnu.mk,
# arm-linux-gnueabihf.mk, arm-linux-gnueabi.mk, riscv64-linux-gnu.mk). The
# including file sets TRIPLET, DEB_ARCH and QEMU_ARCH, and may set QEMU_CPU
# (the CPU qemu-user emulates) and DEB_SUITE (the Debian release of the
# sysroot, default bookworm).
#
# Compiler: Debian's gcc-$(TRIPLET) (make deps DEPS_ARGS=--cross).
# Target libraries: a sysroot built by scripts/sysroot.sh (mmdebstrap
# --variant=extract) in sysroots/$(DEB_ARCH), made on demand: the stamp is
# an included makefile, so make builds it first and re-reads the Makefile,
# and the $(shell $(PKG_CONFIG) ...) lines then see the fresh sysroot.
# SYSROOT=... points at a sysroot of your own (it is then never rebuilt).

ifeq ($(origin SYSROOT),undefined)
SYSROOT := $(CURDIR)/sysroots/$(DEB_ARCH)
M2Z_OWN_SYSROOT := 1
endif
CROSS_COMPILE ?= $(TRIPLET)-
override SYSROOT := $(abspath $(SYSROOT))

# --sysroot goes into CC so every compile and link (objects, unit tests, the
# binary) sees only the target's headers and libraries. Debian's cross gcc
# searches the multiarch dirs (usr/lib/$(TRIPLET)) inside the sysroot.
ifneq ($(origin CC),command line)
CC := $(CROSS_COMPILE)gcc --sysroot=$(SYSROOT)
endif

# pkg-config must answer for the target, never the host: LIBDIR replaces the
# default search path, PATH= drops whatever the environment adds, and
# SYSROOT_DIR prefixes the -I/-L it prints. Written as an env prefix so it
# also takes effect inside the Makefile's $(shell ...).
PKG_CONFIG := PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR=$(SYSROOT)/usr/lib/$(TRIPLET)/pkgconfig:$(SYSROOT)/usr/lib/pkgconfig:$(SYSROOT)/usr/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$(SYSROOT) pkg-config

# Target binaries run through qemu-user called explicitly (binfmt_misc is not
# assumed). -L makes qemu resolve the ELF interpreter and libraries in the
# sysroot. A static binary ignores it.
QEMU := qemu-$(QEMU_ARCH)$(if $(QEMU_CPU), -cpu $(QEMU_CPU)) -L $(SYSROOT)

# protoc-c runs on the host: the C it generates is portable.

ifdef M2Z_OWN_SYSROOT
SYSROOT_STAMP := $(SYSROOT)/.m2z-sysroot
# Only goals that compile need it ("make clean TOOLCHAIN=..." does not).
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),all)),)
include $(SYSROOT)/.m2z-sysroot.mk
endif
$(SYSROOT)/.m2z-sysroot.mk: scripts/sysroot.sh
	M2Z_SUITE=$(or $(M2Z_SUITE),$(DEB_SUITE),bookworm) bash scripts/sysroot.sh $(DEB_ARCH) $(SYSROOT)
	@echo '# made by scripts/sysroot.sh via toolchains/debian-cross.mk' > $@
.PHONY: sysroot
sysroot: $(SYSROOT)/.m2z-sysroot.mk
endif

# The toolchain file is read before the Makefile's first rule.
.DEFAULT_GOAL := all
