# make TOOLCHAIN=riscv64-linux-gnu      64-bit RISC-V, RV64GC (VisionFive 2, Milk-V, Lichee Pi 4A...)
# riscv64 is a Debian release architecture from trixie (13) on; bookworm has
# none, so the sysroot is trixie's while the compiler is bookworm's
# gcc-riscv64-linux-gnu (12). The binary needs Debian 13 (or newer) libraries
# on the board: libgrpc etc. are trixie's.
TRIPLET := riscv64-linux-gnu
DEB_ARCH := riscv64
QEMU_ARCH := riscv64
DEB_SUITE := trixie
include toolchains/debian-cross.mk

# No STATIC=1: bookworm's riscv64 binutils (2.40) cannot link trixie's static
# libraries (its ld crashes on them, e.g. on a static libssl+libc), and the
# libc.a of the cross toolchain lacks the glibc 2.38 symbols they need.
ifeq ($(STATIC),1)
$(error STATIC=1 is not supported with TOOLCHAIN=riscv64-linux-gnu (bookworm's binutils cannot link trixie's static libraries); build it dynamic)
endif
