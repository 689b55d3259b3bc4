#!/usr/bin/env bash
# Build the static libraries Debian does not ship, for STATIC=1 builds.
#
# Usage: scripts/static-deps.sh OUTDIR CC...    (CC may be several words,
#        e.g. "aarch64-linux-gnu-gcc --sysroot=/abs/sysroots/arm64")
#
# Debian 12 ships .a files for grpc (+absl, re2, c-ares, upb, ssl, z),
# protobuf-c and mbedtls, but not for cJSON. It is rebuilt from its Debian
# source package (same version and security patches as the .so the headers
# belong to) into OUTDIR/lib/libcjson.a. So is libmicrohttpd: Debian's .a is built with HTTPS (GnuTLS), whose static
# dependencies (p11-kit, libunistring) Debian does not ship; the metrics
# endpoint needs plain HTTP only, so it is built with --disable-https.
# Sources are fetched once with `apt-get source` through a private apt
# configuration (deb-src lines derived from the host's own apt sources; the
# host's apt state is not touched) and cached in sysroots/src/.
# Idempotent: OUTDIR/.m2z-static-deps holds a key; if it matches, nothing is done.
set -euo pipefail

out=${1:?usage: static-deps.sh OUTDIR CC...}
shift
cc=("$@")
[ ${#cc[@]} -gt 0 ] || { echo "usage: static-deps.sh OUTDIR CC..." >&2; exit 2; }
top=$(cd "$(dirname "$0")/.." && pwd)
cache=$top/sysroots/src
srcpkgs=(cjson libmicrohttpd)

key="v3 cc=${cc[*]} pkgs=${srcpkgs[*]}"
stamp=$out/.m2z-static-deps
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
	echo "static-deps: $out up to date"
	exit 0
fi
start=$(date +%s)

# Fetched already when every package has its unpacked source directory.
have_sources() {
	local p
	for p in "${srcpkgs[@]}"; do
		compgen -G "$cache/$p-*/" >/dev/null || return 1
	done
}

fetch_sources() {
	have_sources && return 0
	local apt=$cache/apt
	rm -rf "$cache" && mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
	apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' \
		| sort -u | sed 's/^/deb-src /' > "$apt/sources.list"
	[ -s "$apt/sources.list" ] || { echo "static-deps: no apt sources found on the host" >&2; exit 1; }
	local opts=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Sandbox::User=root")
	apt-get "${opts[@]}" update >/dev/null
	(cd "$cache" && apt-get "${opts[@]}" source "${srcpkgs[@]}" >/dev/null)
	rm -rf "$apt"
	echo "${srcpkgs[*]}" > "$cache/.fetched"
}

fetch_sources
cjson=$(ls -d "$cache"/cjson-*/ | head -1)
mhd=$(ls -d "$cache"/libmicrohttpd-*/ | head -1)

# aarch64-linux-gnu-gcc -> aarch64-linux-gnu-ar; any other compiler -> $AR or ar.
case ${cc[0]} in *gcc) ar=${AR:-${cc[0]%gcc}ar} ;; *) ar=${AR:-ar} ;; esac

rm -rf "$out" && mkdir -p "$out/lib" "$out/obj/cjson"
flags=(-O2 -fPIC -D_GNU_SOURCE -w)

"${cc[@]}" "${flags[@]}" -c "$cjson/cJSON.c" -o "$out/obj/cjson/cJSON.o"
"$ar" rcs "$out/lib/libcjson.a" "$out/obj/cjson/cJSON.o"

# libmicrohttpd: plain HTTP, internal threads, no TLS/curl/docs; built out of
# tree so the cached source stays clean for the other targets.
host=()
case ${cc[0]} in *-gcc) host=(--host="$(basename "${cc[0]%-gcc}")") ;; esac
mkdir -p "$out/obj/mhd"
(cd "$out/obj/mhd" && "$mhd/configure" -q "${host[@]}" CC="${cc[*]}" CFLAGS="-O2 -fPIC -w" \
	--disable-https --without-gnutls --disable-curl --disable-doc --disable-examples \
	--disable-tools --disable-nls --disable-shared --enable-static >/dev/null \
	&& make -s -C src/microhttpd >/dev/null)
cp "$out/obj/mhd/src/microhttpd/.libs/libmicrohttpd.a" "$out/lib/"
rm -rf "$out/obj"

echo "$key" > "$stamp"
echo "static-deps: built $(basename "$cjson") $(basename "$mhd") into $out/lib in $(( $(date +%s) - start ))s"
