"""The Debian packages, installed the way a fleet installs them (issue 14).

Run by `make test-deb` (CI: .ci/run); not part of `make test`, because each
test builds packages and Debian roots (mmdebstrap) and costs tens of seconds.

- The arm64 package (cross-built, `make deb TOOLCHAIN=aarch64-linux-gnu`) is
  installed by apt with its Depends into a fresh arm64 root; the installed
  binary then runs under qemu with only that root's libraries: --version and
  --check on the installed example configuration. A missing Depends fails it.
- The amd64 package is installed into a fresh bookworm root with its
  maintainer scripts run by dpkg (user, ownership, unit enabled, not
  started); an upgrade to a newer version keeps a modified configuration, the
  secrets file and the spool; removal keeps them too.
"""

import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VERSION = re.search(r"^VERSION := (\S+)", open(os.path.join(REPO, "Makefile")).read(), re.M).group(1)


def run(cmd, timeout=900, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, "%s failed (%d):\n%s\n%s" % (cmd, r.returncode, r.stdout[-4000:], r.stderr[-4000:])
    return r


def make_deb(*args):
    """`make deb ARGS`; returns the path of the .deb it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = run(["make", "-s", "-C", REPO, "WERROR=1", "deb"] + list(args), env=env)
    m = re.search(r"^deb: (\S+\.deb)$", r.stdout, re.M)
    assert m, r.stdout
    return m.group(1)


def local_repo(tmp_path, *debs):
    """A flat apt repository holding debs; the sources line for it."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    for d in debs:
        shutil.copy(d, repo)
    r = run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo)
    (repo / "Packages").write_text(r.stdout)
    return "deb [trusted=yes] copy://%s ./" % repo


def mmdebstrap(suite, root, source, *opts):
    env = dict(os.environ, M2Z_EXTRA_SOURCE=source)
    run(["bash", os.path.join(REPO, "scripts/mmdebstrap.sh"), suite, str(root)] + list(opts), env=env)


def need(*tools):
    for t in tools:
        if not shutil.which(t):
            pytest.skip("%s not installed (scripts/deps.sh --cross)" % t)


def test_arm64_package_installs_with_its_depends_and_runs(tmp_path):
    need("aarch64-linux-gnu-gcc", "qemu-aarch64", "mmdebstrap", "dpkg-scanpackages")
    deb = make_deb("TOOLCHAIN=aarch64-linux-gnu")
    assert deb.endswith("mqtt2zeebe_%s_arm64.deb" % VERSION)
    root = tmp_path / "root"
    # extract: apt resolves and unpacks the package and its Depends; no
    # maintainer script can run on this host without binfmt_misc.
    mmdebstrap("bookworm", root, local_repo(tmp_path, deb), "--variant=extract",
               "--architectures=arm64", "--include=mqtt2zeebe")
    binp = root / "usr/bin/mqtt2zeebe"
    assert binp.is_file()
    # -L: the dynamic loader and every library come from the root alone.
    qemu = ["qemu-aarch64", "-L", str(root), str(binp)]
    r = run(qemu + ["--version"], timeout=120)
    assert r.stdout.strip() == "mqtt2zeebe " + VERSION
    # --check also checks that the spool directory is writable. qemu's -L
    # finds /var/lib/mqtt2zeebe inside the root for stat() but not for
    # access(), so the copy checked here names the root's state directory
    # (installed by the package) by its host path; nothing else changes.
    ini = (root / "etc/mqtt2zeebe/mqtt2zeebe.ini").read_text()
    assert ";directory = /var/lib/mqtt2zeebe\n" in ini
    assert (root / "var/lib/mqtt2zeebe").is_dir()
    checked = tmp_path / "installed.ini"
    checked.write_text(ini.replace(";directory = /var/lib/mqtt2zeebe\n",
                                   "directory = %s\n" % (root / "var/lib/mqtt2zeebe"), 1))
    r = run(qemu + ["--check", "-c", str(checked)], timeout=120, env={"PATH": os.environ["PATH"]})
    assert r.stdout.rstrip().endswith(": OK"), r.stdout
    for f in ("usr/share/man/man8/mqtt2zeebe.8.gz", "usr/share/man/man5/mqtt2zeebe.ini.5.gz",
              "lib/systemd/system/mqtt2zeebe.service", "usr/lib/sysusers.d/mqtt2zeebe.conf",
              "etc/mqtt2zeebe/env"):
        assert (root / f).is_file(), f
    assert oct(os.stat(root / "etc/mqtt2zeebe/env").st_mode & 0o777) == "0o600"


def chroot(root, *cmd):
    return run(["chroot", str(root)] + list(cmd), timeout=300,
               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"})


def test_install_upgrade_keeps_config_and_spool(tmp_path):
    need("mmdebstrap", "dpkg-scanpackages", "chroot")
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot, dpkg running maintainer scripts)")
    v1 = make_deb()
    # The next release: the same tree built with another VERSION (the one
    # place the version lives), in a build directory of its own.
    v2_version = VERSION + "+upgrade1"
    v2 = make_deb("VERSION=" + v2_version, "BUILD=" + str(tmp_path / "build-v2"))
    root = tmp_path / "root"
    # minbase: a real dpkg runs the maintainer scripts (natively).
    mmdebstrap("bookworm", root, local_repo(tmp_path, v1), "--variant=minbase",
               "--include=mqtt2zeebe")

    passwd = (root / "etc/passwd").read_text()
    assert re.search(r"^mqtt2zeebe:x:\d+:\d+:", passwd, re.M), "postinst made no system user"
    st = os.stat(root / "var/lib/mqtt2zeebe")
    uid = int(re.search(r"^mqtt2zeebe:x:(\d+):", passwd, re.M).group(1))
    assert st.st_uid == uid and st.st_mode & 0o777 == 0o700
    ini = root / "etc/mqtt2zeebe/mqtt2zeebe.ini"
    gid = int(re.search(r"^mqtt2zeebe:x:(\d+):", (root / "etc/group").read_text(), re.M).group(1))
    assert os.stat(ini).st_gid == gid and os.stat(ini).st_mode & 0o777 == 0o640
    wants = root / "etc/systemd/system/multi-user.target.wants/mqtt2zeebe.service"
    assert os.path.islink(wants), "the unit is enabled on install"
    chroot(root, "mqtt2zeebe", "--check", "-c", "/etc/mqtt2zeebe/mqtt2zeebe.ini")

    # The operator's changes, and events waiting in the spool.
    mine = ini.read_text().replace(";address = 127.0.0.1:26500", "address = gw.example:26500")
    assert mine != ini.read_text()
    ini.write_text(mine)
    env = root / "etc/mqtt2zeebe/env"
    env.write_text("ZEEBE_CLIENT_SECRET=s3cret\n")
    spooled = root / "var/lib/mqtt2zeebe/seg-00000001.log"
    spooled.write_bytes(b"\x00pending events\x01" * 100)
    os.chown(spooled, uid, gid)

    shutil.copy(v2, root / "tmp")
    chroot(root, "dpkg", "-i", "/tmp/" + os.path.basename(v2))
    r = chroot(root, "dpkg-query", "-W", "-f", "${Version}", "mqtt2zeebe")
    assert r.stdout == v2_version
    r = chroot(root, "mqtt2zeebe", "--version")
    assert r.stdout.strip() == "mqtt2zeebe " + v2_version
    assert ini.read_text() == mine, "the upgrade overwrote the modified configuration"
    assert os.stat(ini).st_gid == gid
    assert env.read_text() == "ZEEBE_CLIENT_SECRET=s3cret\n"
    assert os.stat(env).st_mode & 0o777 == 0o600
    assert spooled.read_bytes() == b"\x00pending events\x01" * 100
    assert os.stat(root / "var/lib/mqtt2zeebe").st_uid == uid
    assert os.path.islink(wants)
    chroot(root, "mqtt2zeebe", "--check", "-c", "/etc/mqtt2zeebe/mqtt2zeebe.ini")

    # Removal (not purge) keeps configuration and spool.
    chroot(root, "dpkg", "-r", "mqtt2zeebe")
    assert not (root / "usr/bin/mqtt2zeebe").exists()
    assert ini.read_text() == mine
    assert spooled.is_file()
