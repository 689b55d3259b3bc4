#!/usr/bin/env bash
# Edge-build checks for CI and for people: cross build, run under qemu-user
# (called explicitly: binfmt_misc is not assumed), static build.
#
# Usage: scripts/qemu-test.sh TOOLCHAIN [e2e|smoke] [make args...]
#   TOOLCHAIN  aarch64-linux-gnu | arm-linux-gnueabihf | arm-linux-gnueabi |
#              riscv64-linux-gnu | native (no cross)
#   smoke      WERROR build, unit tests under qemu, --version and --check of
#              conf/mqtt2zeebe.ini, then the same binary with STATIC=1:
#              fully static (no ELF interpreter), --version, --check, and one
#              real end-to-end test (TLS + token) against it. qemu runs the
#              toolchain's QEMU_CPU (armel: arm1176, the Pi Zero's CPU).
#              Toolchains without STATIC=1 (riscv64) skip the static part.
#   e2e        smoke + the integration subset below against the binary run
#              under qemu (real mosquitto, stand-in gateway and token
#              endpoint, TLS and token on). PYTEST_ARGS overrides the subset.
set -euo pipefail
cd "$(dirname "$0")/.."
tc=${1:?usage: qemu-test.sh TOOLCHAIN [e2e|smoke]}
what=${2:-smoke}
shift $(( $# >= 2 ? 2 : 1 ))
jobs=$(nproc 2>/dev/null || echo 2)

mk=(make -j"$jobs" WERROR=1 "$@")
build=build
if [ "$tc" != native ]; then
	mk+=(TOOLCHAIN="$tc")
	build=build-$tc
fi
# The lean subset: one full e2e (TLS + token), clean SIGTERM shutdown, CLI.
subset="test_event_arrives_with_configured_fields or test_kill_inside_on_message_is_redelivered or test_sigterm_exit_and_no_secret_in_log or test_version or test_check_lists_routes_and_hides_secrets"

t0=$(date +%s)
step() { echo "== qemu-test $tc: $* ($(( $(date +%s) - t0 ))s)"; }

step "build + unit tests"
"${mk[@]}" unit

run=$build/mqtt2zeebe
if [ "$tc" != native ]; then
	"${mk[@]}" "$build/mqtt2zeebe-run" >/dev/null
	run=$build/mqtt2zeebe-run
fi

smoke() {  # $1 = command that runs the binary
	local out
	out=$("$1" --version)
	echo "$out"
	case $out in "mqtt2zeebe "[0-9]*) ;; *) echo "unexpected --version output" >&2; exit 1 ;; esac
	"$1" --check -c conf/mqtt2zeebe.ini >/dev/null
	echo "--check -c conf/mqtt2zeebe.ini: ok"
}
step "smoke $run"
smoke "$run"

if [ "$what" = e2e ]; then
	step "integration subset under emulation"
	"${mk[@]}" integration PYTEST_ARGS="${PYTEST_ARGS:--k '$subset'}"
fi

# riscv64-linux-gnu.mk refuses STATIC=1 (see there).
if [ "$tc" != native ] && ! make -s -n TOOLCHAIN="$tc" STATIC=1 all >/dev/null 2>&1; then
	step "no STATIC=1 for $tc: done"
	exit 0
fi

step "STATIC=1 build"
"${mk[@]}" STATIC=1 all
sbin=$build-static/mqtt2zeebe
if readelf -l "$sbin" | grep -q INTERP || readelf -d "$sbin" | grep -q NEEDED; then
	echo "$sbin is not fully static" >&2
	exit 1
fi
echo "$sbin: fully static"
srun=$sbin
if [ "$tc" != native ]; then
	# No -L: a static binary must not need the sysroot.
	q=$(make -s -pn TOOLCHAIN="$tc" 2>/dev/null | sed -n 's/^QEMU := \(.*\) -L .*/\1/p' | head -1)
	printf '#!/bin/sh\nexec %s %s "$@"\n' "$q" "$(pwd)/$sbin" > "$build-static/mqtt2zeebe-run"
	chmod +x "$build-static/mqtt2zeebe-run"
	srun=$build-static/mqtt2zeebe-run
fi
step "smoke $srun"
smoke "$srun"
step "end-to-end test against $srun"
M2Z_BIN=$(pwd)/$srun /usr/bin/python3 -m pytest -q tests/integration -k test_event_arrives_with_configured_fields
step "done"
