#!/usr/bin/env bash
# Build mqtt2zeebe for x86_64, aarch64, armhf, armel and riscv64, dynamic and
# STATIC=1 (riscv64: dynamic only, see toolchains/riscv64-linux-gnu.mk), and
# print a markdown table of the stripped sizes (README.md, "Sizes").
# Usage: scripts/sizes.sh [make args...]        (make sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rows=()
for tc in "" aarch64-linux-gnu arm-linux-gnueabihf arm-linux-gnueabi riscv64-linux-gnu; do
	for st in 0 1; do
		[ "$tc" = riscv64-linux-gnu ] && [ $st = 1 ] && continue
		args=(-s -j"$jobs" STATIC=$st "$@")
		[ -n "$tc" ] && args+=(TOOLCHAIN="$tc")
		make "${args[@]}" >/dev/null
		sfx=; kind=dynamic
		if [ $st = 1 ]; then sfx=-static; kind=static; fi
		b=build${tc:+-$tc}$sfx/mqtt2zeebe
		strip=${tc:+$tc-}strip
		$strip -o "$tmp/m2z" "$b"
		# No ELF interpreter and no DT_NEEDED = fully static.
		needed=$(readelf -d "$b" | grep -c NEEDED || true)
		if readelf -l "$b" | grep -q INTERP || [ "$needed" -gt 0 ]; then linked="dynamic, $needed NEEDED"; else linked="fully static"; fi
		rows+=("| ${tc:-x86_64 (native)} | $kind | $(stat -c %s "$b") | $(stat -c %s "$tmp/m2z") | $linked |")
	done
done
echo "| target | build | unstripped bytes | stripped bytes | linkage |"
echo "|---|---|---:|---:|---|"
printf '%s\n' "${rows[@]}"
