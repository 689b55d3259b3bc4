# make TOOLCHAIN=riscv64-linux-gnu      64-bit RISC-V, RV64GC (VisionFive 2, Milk-V, Lichee Pi 4A...)
TRIPLET := riscv64-linux-gnu
DEB_ARCH := riscv64
QEMU_ARCH := riscv64
include toolchains/debian-cross.mk
