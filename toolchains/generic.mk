# make TOOLCHAIN=generic CROSS_COMPILE=<prefix> SYSROOT=<dir> [QEMU=...]
#
# Any GCC cross toolchain with a populated sysroot: a Yocto SDK
# (SYSROOT defaults to $SDKTARGETSYSROOT after sourcing environment-setup-*),
# a Buildroot SDK (output/host/bin/<tuple>- with SYSROOT=output/staging),
# or a vendor toolchain. Examples:
#   make TOOLCHAIN=generic CROSS_COMPILE=aarch64-poky-linux- \
#        SYSROOT=/opt/poky/4.0/sysroots/cortexa72-poky-linux
#   make TOOLCHAIN=generic CROSS_COMPILE=$BR/output/host/bin/arm-buildroot-linux-gnueabihf- \
#        SYSROOT=$BR/output/staging
# The sysroot must hold grpc, protobuf-c, mbedtls, cjson
# (and cmocka for the unit tests) with their .pc files. protoc-c runs on the
# build host. Set QEMU (e.g. QEMU="qemu-aarch64 -L $SYSROOT") to run the
# tests under emulation.

ifeq ($(origin SYSROOT),undefined)
SYSROOT := $(SDKTARGETSYSROOT)
endif
ifeq ($(strip $(SYSROOT)),)
$(error TOOLCHAIN=generic needs SYSROOT=<target sysroot> (or a sourced Yocto SDK environment))
endif
ifeq ($(strip $(CROSS_COMPILE))$(filter environment command line,$(origin CC)),)
$(error TOOLCHAIN=generic needs CROSS_COMPILE=<prefix-> (e.g. aarch64-poky-linux-) or CC)
endif
override SYSROOT := $(abspath $(SYSROOT))

# A Yocto SDK environment already sets CC (with --sysroot and the CPU flags):
# keep it. Otherwise use $(CROSS_COMPILE)gcc with the sysroot.
ifeq ($(filter environment command line,$(origin CC)),)
CC := $(CROSS_COMPILE)gcc --sysroot=$(SYSROOT)
endif

# Only the target's .pc files; their paths get the sysroot prefix. The libdir
# list covers plain (Buildroot, Yocto) and Debian multiarch layouts.
TARGET_TRIPLET ?= $(shell $(CC) -dumpmachine 2>/dev/null)
PKG_CONFIG := PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR=$(SYSROOT)/usr/lib/pkgconfig:$(SYSROOT)/usr/lib/$(TARGET_TRIPLET)/pkgconfig:$(SYSROOT)/usr/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$(SYSROOT) pkg-config

.DEFAULT_GOAL := all
