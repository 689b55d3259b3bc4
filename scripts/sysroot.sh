#!/usr/bin/env bash
# Build a Debian sysroot holding mqtt2zeebe's target libraries (headers,
# .so, .a, .pc) for a foreign architecture, for cross-compiling and for
# running the result under qemu-user (-L <sysroot>).
#
# Usage: scripts/sysroot.sh DEB_ARCH DIR     e.g. scripts/sysroot.sh arm64 sysroots/arm64
#
# Why mmdebstrap --variant=extract and not multiarch (dpkg --add-architecture):
# multiarch -dev packages must match the host's versions exactly, and it
# mutates the host. extract just unpacks the .debs (with their dependencies)
# into DIR; nothing runs, no root-owned state is touched outside DIR.
#
# Idempotent and cached: DIR/.m2z-sysroot holds a key of the arch, suite and
# package list; if it matches, nothing is done. A changed list rebuilds.
# The build goes to DIR.new and is renamed at the end, so an interrupted run
# never leaves a half sysroot that looks complete.
set -euo pipefail

arch=${1:?usage: sysroot.sh DEB_ARCH DIR}
dir=${2:?usage: sysroot.sh DEB_ARCH DIR}
suite=${M2Z_SUITE:-bookworm}

# What mqtt2zeebe links against, plus cmocka for the unit tests. libc6-dev and
# the static-link deps of grpc (ssl, z, c-ares, re2, absl) come in as
# dependencies. libssl-dev is named for the static link of gRPC core (its
# TLS), whose .pc does not pull it in.
pkgs=(
	libc6-dev
	libgrpc-dev libprotobuf-c-dev libmbedtls-dev
	libcjson-dev libcmocka-dev libssl-dev libmicrohttpd-dev
)

key="v4 arch=$arch suite=$suite mirror=${M2Z_MIRROR:-default} pkgs=${pkgs[*]}"
stamp="$dir/.m2z-sysroot"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
	echo "sysroot: $dir up to date ($arch, $suite)"
	exit 0
fi

start=$(date +%s)
mkdir -p "$(dirname "$dir")"
inc=$(IFS=,; echo "${pkgs[*]}")
echo "sysroot: creating $dir for $arch from $suite (mmdebstrap --variant=extract)"
# scripts/mmdebstrap.sh: the host's mirrors, and fewer suites when an index
# cannot be fetched (then its last line says so).
out=$(bash "$(dirname "$0")/mmdebstrap.sh" "$suite" "$dir.new" --variant=extract --architectures="$arch" \
	--include="$inc" --extract-hook='mkdir -p "$1/.debs" && cp "$1"/var/cache/apt/archives/*.deb "$1/.debs/"')
[ -z "$out" ] || echo "$out"
degraded=$(echo "$out" | sed -n 's/^degraded: //p')

# Absolute symlinks (usr/lib/<triplet>/libz.so -> /lib/<triplet>/libz.so.1)
# would resolve against the HOST when the linker opens them, so rewrite them
# relative to their own directory. Linker scripts (libc.so) need no fixing:
# ld prefixes paths in scripts that live inside --sysroot with the sysroot.
fixed=0
while IFS= read -r -d '' link; do
	target=$(readlink "$link")
	rel=$(realpath -m --relative-to="$(dirname "$link")" "$dir.new$target")
	ln -sfn "$rel" "$link"
	fixed=$((fixed + 1))
done < <(find "$dir.new/usr" "$dir.new/lib" -type l -lname '/*' -print0 2>/dev/null)

# Merged /usr (trixie on): the files are only under usr/, but libc.so and
# the ELF interpreter path name /lib/...; extract does not run base-files'
# set-up that makes /lib -> usr/lib, so make those links here.
for d in lib lib64 bin sbin; do
	[ -e "$dir.new/$d" ] || [ ! -d "$dir.new/usr/$d" ] || ln -s "usr/$d" "$dir.new/$d"
done

# extract runs no dpkg, so the sysroot has no package database for
# dpkg-shlibdeps (make deb: Depends: from the libraries actually linked).
# It also looks for symbols/shlibs files in the DEBIAN/ directory of the tree
# a library sits in: gather every package's into DIR/DEBIAN/.
mkdir -p "$dir.new/DEBIAN" "$dir.new/.debs/ctrl"
for deb in "$dir.new"/.debs/*.deb; do
	rm -rf "$dir.new/.debs/ctrl" && dpkg-deb -e "$deb" "$dir.new/.debs/ctrl"
	for f in shlibs symbols; do
		[ ! -f "$dir.new/.debs/ctrl/$f" ] || cat "$dir.new/.debs/ctrl/$f" >> "$dir.new/DEBIAN/$f"
	done
done
rm -rf "$dir.new/.debs"

# Device nodes and apt state are not wanted in a sysroot.
rm -rf "$dir.new/dev" "$dir.new/var/cache/apt" "$dir.new/var/lib/apt/lists"

echo "$key" > "$dir.new/.m2z-sysroot"
[ -z "$degraded" ] || echo "$degraded" > "$dir.new/.m2z-sysroot-degraded"
rm -rf "$dir"
mv "$dir.new" "$dir"
echo "sysroot: $dir ready${degraded:+ ($degraded)} in $(( $(date +%s) - start ))s ($fixed absolute symlinks made relative, $(du -sh "$dir" | cut -f1))"
