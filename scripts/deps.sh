#!/usr/bin/env bash
# Install the Debian packages mqtt2zeebe builds, tests and demos with.
# Usage: scripts/deps.sh [--cross]   (--cross adds the ARM/RISC-V toolchains, qemu, lintian)
set -euo pipefail

pkgs=(
	build-essential pkg-config make
	libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
	libmbedtls-dev libcjson-dev libmicrohttpd-dev
	libcmocka-dev systemd mandoc
	clang libclang-rt-14-dev
	mosquitto mosquitto-clients openssl
	python3 python3-grpcio python3-protobuf protobuf-compiler
	python3-pytest python3-paho-mqtt python3-cryptography
)
if [ "${1:-}" = "--cross" ]; then
	# g++-*: libstdc++.a for STATIC=1 (gRPC core is C++ inside).
	pkgs+=(gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf g++-aarch64-linux-gnu g++-arm-linux-gnueabihf
		gcc-arm-linux-gnueabi g++-arm-linux-gnueabi gcc-riscv64-linux-gnu
		qemu-user mmdebstrap
		lintian)  # make deb (dpkg-dev comes with build-essential), make test-deb
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "deps: all ${#pkgs[@]} packages present"; exit 0; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
