#!/usr/bin/env bash
# Build the static libraries Debian does not ship, for STATIC=1 builds.
#
# Usage: scripts/static-deps.sh OUTDIR CC...    (CC may be several words,
#        e.g. "aarch64-linux-gnu-gcc --sysroot=/abs/sysroots/arm64")
#
# Debian 12 ships .a files for grpc (+absl, re2, c-ares, upb, ssl, z),
# protobuf-c and mbedtls, but not for libmosquitto and cJSON. Those two
# are rebuilt from their Debian source packages (same version and security
# patches as the .so the headers belong to) into OUTDIR/lib/lib*.a. So is
# libmicrohttpd: Debian's .a is built with HTTPS (GnuTLS), whose static
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
srcpkgs=(mosquitto cjson libmicrohttpd)

key="v2 cc=${cc[*]} pkgs=${srcpkgs[*]}"
stamp=$out/.m2z-static-deps
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
	echo "static-deps: $out up to date"
	exit 0
fi
start=$(date +%s)

fetch_sources() {
	[ -f "$cache/.fetched" ] && [ "$(cat "$cache/.fetched")" = "${srcpkgs[*]}" ] && return 0
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
mosq=$(ls -d "$cache"/mosquitto-*/ | head -1)
cjson=$(ls -d "$cache"/cjson-*/ | head -1)
mhd=$(ls -d "$cache"/libmicrohttpd-*/ | head -1)

# aarch64-linux-gnu-gcc -> aarch64-linux-gnu-ar; any other compiler -> $AR or ar.
case ${cc[0]} in *gcc) ar=${AR:-${cc[0]%gcc}ar} ;; *) ar=${AR:-ar} ;; esac

rm -rf "$out" && mkdir -p "$out/lib" "$out/obj/mosquitto" "$out/obj/cjson"
flags=(-O2 -fPIC -D_GNU_SOURCE -w)

# libmosquitto as Debian configures it for clients: TLS (OpenSSL), TLS-PSK,
# threading, SOCKS; no SRV lookups (would pull c-ares). Compiled directly
# rather than through its Makefile, whose host-tool probing gets cross
# builds wrong.
mdefs=(-DWITH_TLS -DWITH_TLS_PSK -DWITH_THREADING -DWITH_SOCKS -DWITH_UNIX_SOCKETS -DWITH_EC
	-I"$mosq" -I"$mosq/lib" -I"$mosq/include" -I"$mosq/deps")
for c in "$mosq"/lib/*.c; do
	"${cc[@]}" "${flags[@]}" "${mdefs[@]}" -c "$c" -o "$out/obj/mosquitto/$(basename "${c%.c}").o"
done
# A few sources the library needs live in common/ in 2.x.
for c in "$mosq"/common/*.c; do
	[ -e "$c" ] || continue
	"${cc[@]}" "${flags[@]}" "${mdefs[@]}" -I"$mosq/common" -c "$c" -o "$out/obj/mosquitto/common_$(basename "${c%.c}").o"
done
"$ar" rcs "$out/lib/libmosquitto.a" "$out"/obj/mosquitto/*.o

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
echo "static-deps: built $(basename "$mosq") $(basename "$cjson") $(basename "$mhd") into $out/lib in $(( $(date +%s) - start ))s"
