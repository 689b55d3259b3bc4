#!/usr/bin/env bash
# Turn a `make install DESTDIR=BUILD/deb/root prefix=/usr` tree into a .deb
# with Debian's tools. Called by `make deb` (see the Makefile).
#
# Usage: packaging/deb/build.sh BUILD VERSION DEB_ARCH CROSS_COMPILE SYSROOT TRIPLET [static]
#   CROSS_COMPILE/SYSROOT/TRIPLET are empty for a native build.
#   static: the package is mqtt2zeebe-static, with no library dependencies.
# Output: BUILD/<package>_<VERSION>_<DEB_ARCH>.deb, and `lintian` on it when
# lintian is installed (M2Z_LINTIAN=0 skips; tags in packaging/deb/lintian-overrides
# are explained in README.md, "Install from a package").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd) version=$2 arch=$3 cross=$4 sysroot=$5 triplet=$6 variant=${7:-}
pkg=mqtt2zeebe
[ "$variant" = static ] && pkg=mqtt2zeebe-static
root=$build/deb/root
work=$build/deb/work
rm -rf "$work" && mkdir -p "$work/debian" "$root/DEBIAN"

# The binary as dh_strip leaves it (debug info is not shipped).
"${cross}strip" --remove-section=.comment --remove-section=.note --strip-unneeded "$root/usr/bin/mqtt2zeebe"

# Documentation: copyright, changelog (made from VERSION: the Makefile is
# the one place the version lives), compressed man pages.
doc=$root/usr/share/doc/$pkg
install -d "$doc"
install -m 0644 "$here/copyright" "$doc/copyright"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}
date=$(date -R -u -d "@$SOURCE_DATE_EPOCH")
printf '%s (%s) unstable; urgency=medium\n\n  * Release %s (see README.md).\n\n -- %s  %s\n' \
	mqtt2zeebe "$version" "$version" "$(sed -n 's/^Maintainer: //p' "$here/control")" "$date" \
	> "$work/debian/changelog"
# A native package (the version has no Debian revision): changelog.gz.
gzip -9n -c "$work/debian/changelog" > "$doc/changelog.gz"
find "$root/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} +
install -d "$root/usr/share/lintian/overrides"
overrides=("$here/lintian-overrides")
[ "$pkg" = mqtt2zeebe ] || overrides+=("$here/lintian-overrides.static")
cat "${overrides[@]}" | sed "s/@PKG@/$pkg/" > "$root/usr/share/lintian/overrides/$pkg"
chmod 0644 "$root/usr/share/lintian/overrides/$pkg"

for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$root/DEBIAN/$s"; done
# Every file under /etc is a conffile: an upgrade never overwrites the
# administrator's copy (dpkg asks when both sides changed it).
(cd "$root" && find etc -type f | sort | sed 's|^|/|') > "$root/DEBIAN/conffiles"

# Depends: from the libraries the binary actually links (DT_NEEDED), mapped
# to packages by the symbols/shlibs files: the host's dpkg database, or for a
# cross build those gathered into SYSROOT/DEBIAN by scripts/sysroot.sh.
cp "$here/control" "$work/debian/control"
: > "$work/debian/substvars"
echo 'misc:Depends=systemd | systemd-standalone-sysusers | systemd-sysusers' >> "$work/debian/substvars"
if [ "$pkg" = mqtt2zeebe ]; then
	args=()
	if [ -n "$sysroot" ]; then
		args=(-l"$sysroot/lib/$triplet" -l"$sysroot/usr/lib/$triplet")
		export DEB_HOST_ARCH=$arch DEB_HOST_MULTIARCH=$triplet
	fi
	(cd "$work" && dpkg-shlibdeps ${args[@]+"${args[@]}"} -Tdebian/substvars "$root/usr/bin/mqtt2zeebe")
fi
(cd "$work" && dpkg-gencontrol -p"$pkg" -v"$version" -DArchitecture="$arch" -Tdebian/substvars -P"$root")
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
# dpkg-gencontrol writes Installed-Size from the tree; the tree's owners do
# not matter: --root-owner-group makes every file root:root in the archive.
out=$build/${pkg}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "deb: $out"
dpkg-deb -f "$out" Package Version Architecture Depends

if [ "${M2Z_LINTIAN:-1}" != 0 ] && command -v lintian >/dev/null; then
	rc=0
	lintian --fail-on error,warning "$out" > "$work/lintian.log" 2>&1 || rc=$?
	grep -v '^running with root privileges' "$work/lintian.log" || true
	[ "$rc" = 0 ] || { echo "lintian: $out: errors or warnings (above)" >&2; exit 1; }
	echo "lintian: $out: no errors or warnings"
fi
