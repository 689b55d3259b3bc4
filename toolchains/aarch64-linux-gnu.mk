# make TOOLCHAIN=aarch64-linux-gnu      64-bit ARM (Raspberry Pi 4/5 64-bit OS, i.MX8, Jetson...)
TRIPLET := aarch64-linux-gnu
DEB_ARCH := arm64
QEMU_ARCH := aarch64
include toolchains/debian-cross.mk
