# make TOOLCHAIN=arm-linux-gnueabi      32-bit ARM soft-float, Debian armel (ARMv5TE baseline)
# Runs on ARMv5 gateways and on ARMv6 (Raspberry Pi Zero/Zero W/1, ARM1176).
# For Raspberry Pi OS 32-bit on a Pi Zero/1 use the STATIC=1 build
# (build-arm-linux-gnueabi-static/mqtt2zeebe): with no shared libraries the
# system's float ABI does not matter. Tested with qemu-arm -cpu arm1176.
TRIPLET := arm-linux-gnueabi
DEB_ARCH := armel
QEMU_ARCH := arm
# The Pi Zero's CPU: every run under qemu (unit tests, smoke, integration)
# fails with SIGILL on any ARMv7-only instruction.
QEMU_CPU := arm1176
include toolchains/debian-cross.mk
