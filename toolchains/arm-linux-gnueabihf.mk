# make TOOLCHAIN=arm-linux-gnueabihf    32-bit ARMv7 hard-float (Raspberry Pi OS 32-bit, i.MX6, AM335x...)
# Debian armhf is ARMv7-A + VFPv3-D16 + Thumb-2; ARMv6 (Pi Zero/1) needs another toolchain (generic.mk).
TRIPLET := arm-linux-gnueabihf
DEB_ARCH := armhf
QEMU_ARCH := arm
include toolchains/debian-cross.mk
