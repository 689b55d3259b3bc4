"""`make install` into a DESTDIR: the layout, the systemd unit, and that an
existing configuration survives a reinstall.

The binary installed is the one under test ($M2Z_BIN, or build/mqtt2zeebe);
`make -o BIN` keeps make from trying to rebuild it (it may be an ASan build
or a qemu wrapper from another build directory).
"""

import os
import shutil
import stat
import subprocess

import pytest

import util

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# What the unit must say (README.md, issue 4). Checked as whole lines.
UNIT_LINES = [
    "Restart=on-failure",
    "User=mqtt2zeebe",
    "StateDirectory=mqtt2zeebe",
    "ConfigurationDirectory=mqtt2zeebe",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "NoNewPrivileges=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "MemoryDenyWriteExecute=yes",
    "SystemCallFilter=@system-service",
    "KillSignal=SIGTERM",
]


def make_install(m2z_bin, tmp_path, destdir, *args):
    build = tmp_path / "build"
    build.mkdir(exist_ok=True)
    cmd = ["make", "-s", "-C", REPO, "-o", m2z_bin, "install",
           "BIN=" + m2z_bin, "BUILD=" + str(build), "DESTDIR=" + str(destdir)]
    cmd += list(args)
    env = dict(os.environ)
    for k in ("TOOLCHAIN", "STATIC", "SANITIZE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "make install failed:\n%s\n%s" % (r.stdout, r.stderr)
    return r


def make_version():
    with open(os.path.join(REPO, "Makefile")) as f:
        return next(ln.split(":=")[1].strip() for ln in f if ln.startswith("VERSION :="))


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def unit_lines(path):
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def test_layout_with_default_prefix(m2z_bin, tmp_path):
    dest = tmp_path / "root"
    make_install(m2z_bin, tmp_path, dest, "prefix=/usr")

    binp = dest / "usr/bin/mqtt2zeebe"
    assert binp.is_file() and mode(binp) == 0o755
    with open(binp, "rb") as a, open(m2z_bin, "rb") as b:
        assert a.read() == b.read()

    ini = dest / "etc/mqtt2zeebe/mqtt2zeebe.ini"
    assert mode(ini) == 0o640, "config may hold secrets: not world-readable"
    assert mode(dest / "etc/mqtt2zeebe") == 0o750
    with open(ini) as a, open(os.path.join(REPO, "conf/mqtt2zeebe.ini")) as b:
        assert a.read() == b.read()

    spool = dest / "var/lib/mqtt2zeebe"
    assert spool.is_dir() and mode(spool) == 0o700

    env = dest / "etc/mqtt2zeebe/env"
    assert mode(env) == 0o600, "the secrets template is root's only"
    assert all(ln.startswith("#") for ln in env.read_text().splitlines() if ln.strip()), \
        "the template sets nothing"
    for page in ("usr/share/man/man8/mqtt2zeebe.8", "usr/share/man/man5/mqtt2zeebe.ini.5"):
        text = (dest / page).read_text()
        assert "@VERSION@" not in text and '"mqtt2zeebe %s"' % make_version() in text, page

    sysusers = dest / "usr/lib/sysusers.d/mqtt2zeebe.conf"
    assert any(ln.split()[:2] == ["u", "mqtt2zeebe"] for ln in unit_lines(sysusers))

    unit = dest / "lib/systemd/system/mqtt2zeebe.service"
    assert mode(unit) == 0o644
    lines = unit_lines(unit)
    text = "\n".join(lines)
    assert "@" not in text.replace("@system-service", ""), "unsubstituted @var@ in unit"
    assert "ExecStart=/usr/bin/mqtt2zeebe -c /etc/mqtt2zeebe/mqtt2zeebe.ini" in lines
    assert "EnvironmentFile=-/etc/mqtt2zeebe/env" in lines
    for want in UNIT_LINES:
        assert want in lines, "unit lacks %r" % want
    stop = [ln for ln in lines if ln.startswith("TimeoutStopSec=")]
    assert stop and stop[0].endswith("s") and int(stop[0].split("=")[1][:-1]) > 5, \
        "TimeoutStopSec must exceed the default 5s shutdown_timeout"


def test_installed_binary_accepts_installed_config(m2z_bin, tmp_path):
    dest = tmp_path / "root"
    make_install(m2z_bin, tmp_path, dest, "prefix=/usr")
    r = subprocess.run([str(dest / "usr/bin/mqtt2zeebe"), "--check",
                        "-c", str(dest / "etc/mqtt2zeebe/mqtt2zeebe.ini")],
                       env=util.clean_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_reinstall_keeps_existing_config(m2z_bin, tmp_path):
    dest = tmp_path / "root"
    make_install(m2z_bin, tmp_path, dest, "prefix=/usr")
    ini = dest / "etc/mqtt2zeebe/mqtt2zeebe.ini"
    mine = "; edited by the operator\n[zeebe]\naddress = gw.local:26500\n"
    ini.write_text(mine)
    os.chmod(ini, 0o600)
    (dest / "usr/bin/mqtt2zeebe").write_bytes(b"old")

    make_install(m2z_bin, tmp_path, dest, "prefix=/usr")
    assert ini.read_text() == mine
    assert mode(ini) == 0o600
    with open(dest / "usr/bin/mqtt2zeebe", "rb") as a, open(m2z_bin, "rb") as b:
        assert a.read() == b.read(), "the binary itself is replaced"


def test_prefix_and_sysconfdir_are_honoured(m2z_bin, tmp_path):
    dest = tmp_path / "root"
    make_install(m2z_bin, tmp_path, dest, "prefix=/opt/m2z", "sysconfdir=/opt/m2z/etc")
    assert (dest / "opt/m2z/bin/mqtt2zeebe").is_file()
    assert (dest / "opt/m2z/etc/mqtt2zeebe/mqtt2zeebe.ini").is_file()
    assert not (dest / "usr/bin/mqtt2zeebe").exists()
    lines = unit_lines(dest / "lib/systemd/system/mqtt2zeebe.service")
    assert "ExecStart=/opt/m2z/bin/mqtt2zeebe -c /opt/m2z/etc/mqtt2zeebe/mqtt2zeebe.ini" in lines
    assert "EnvironmentFile=-/opt/m2z/etc/mqtt2zeebe/env" in lines


def test_unit_passes_systemd_analyze_verify(m2z_bin, tmp_path):
    sa = shutil.which("systemd-analyze")
    if not sa:
        pytest.skip("systemd-analyze not installed")
    dest = tmp_path / "root"
    make_install(m2z_bin, tmp_path, dest, "prefix=/usr")
    # verify checks that ExecStart exists: point it into DESTDIR.
    unit = (dest / "lib/systemd/system/mqtt2zeebe.service").read_text()
    unit = unit.replace("ExecStart=/usr/bin/", "ExecStart=%s/usr/bin/" % dest)
    probe = tmp_path / "mqtt2zeebe.service"
    probe.write_text(unit)
    r = subprocess.run([sa, "verify", str(probe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mqtt2zeebe.service" not in r.stderr, r.stderr
