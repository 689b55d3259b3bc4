#!/usr/bin/env bash
# mmdebstrap with this project's mirror choice and fallbacks; used by
# scripts/sysroot.sh (sysroots) and tests/package/test_deb.py (roots to
# install the packages into).
#
# Usage: scripts/mmdebstrap.sh SUITE DIR [mmdebstrap options...]
#   e.g. scripts/mmdebstrap.sh bookworm /tmp/r --variant=extract --architectures=arm64 --include=...
# M2Z_EXTRA_SOURCE: one more sources line, kept in every attempt (the tests'
# local repository: "deb [trusted=yes] copy:///dir ./").
# Builds into DIR (which must not exist). Prints "degraded: ..." on stdout's
# last line when it had to drop suites (see below).
set -euo pipefail
suite=${1:?usage: mmdebstrap.sh SUITE DIR [options...]}
dir=${2:?usage: mmdebstrap.sh SUITE DIR [options...]}
shift 2

command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing: run 'make deps DEPS_ARGS=--cross'" >&2; exit 1; }

# The mirrors are the host's own apt sources for $suite (and $suite-updates,
# $suite-security): those are the ones known to be reachable and consistent
# here (mmdebstrap's built-in defaults name other hosts). M2Z_MIRROR
# overrides with one mirror URI or a full "deb ..." line.
mirror=()
if [ -n "${M2Z_MIRROR:-}" ]; then
	mirror=("$M2Z_MIRROR")
else
	srcs=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' | sort -u)
	while read -r uri rel comp; do
		case $rel in "$suite"|"$suite"-*) mirror+=("deb $uri $rel $comp") ;; esac
	done <<<"$srcs"
	# Another release than the host's (riscv64 is a release architecture
	# only from trixie on): the same Debian mirrors, with the suite renamed.
	if [ ${#mirror[@]} -eq 0 ]; then
		host=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
		while read -r uri rel comp; do
			case $rel in "$host"|"$host"-*) mirror+=("deb $uri $suite${rel#"$host"} $comp") ;; esac
		done <<<"$srcs"
	fi
fi
[ ${#mirror[@]} -gt 0 ] || echo "mmdebstrap: no host apt source for $suite; using mmdebstrap's default mirror" >&2

# unshare mode needs user namespaces; as root, root mode needs nothing.
mode=auto
[ "$(id -u)" -eq 0 ] && mode=root

run() {
	rm -rf "$dir"
	mmdebstrap --quiet --mode="$mode" "$@" "$suite" "$dir" ${mirror_now[@]+"${mirror_now[@]}"} \
		${M2Z_EXTRA_SOURCE:+"$M2Z_EXTRA_SOURCE"}
}
mirror_now=(${mirror[@]+"${mirror[@]}"})
run "$@" && exit 0

# Seen here: a caching proxy serving a stale Packages index of
# $suite-security or $suite-updates for one architecture ("File has
# unexpected size... Mirror sync in progress?"). Fall back to fewer suites
# (without -security, then the release alone) so the build is not blocked,
# and say so loudly.
for drop in "$suite-security" "$suite-"; do
	mirror_now=()
	for m in ${mirror[@]+"${mirror[@]}"}; do
		case $m in *" $drop"*) ;; *) mirror_now+=("$m") ;; esac
	done
	[ ${#mirror_now[@]} -gt 0 ] && [ ${#mirror_now[@]} -lt ${#mirror[@]} ] || continue
	echo "mmdebstrap: WARNING: retrying with only: ${mirror_now[*]}" >&2
	if run "$@"; then
		echo "degraded: from ${mirror_now[*]} only (other indexes could not be fetched): it may lack updates"
		exit 0
	fi
done
exit 1
