"""The man pages (issue 14): mqtt2zeebe.ini(5)'s KEYS section is generated
from the option table in src/conf.c and cannot drift from it (nor from the
README tables); both pages render without warnings; mqtt2zeebe(8) lists every
option of usage().

conf_reference (tests/tools/conf_reference.c, built by `make integration`)
prints conf_print_reference(); for a cross build it runs under $M2Z_QEMU.
"""

import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAN8 = os.path.join(REPO, "man", "mqtt2zeebe.8")
MAN5 = os.path.join(REPO, "man", "mqtt2zeebe.ini.5")


def tool():
    build = os.path.dirname(os.environ["M2Z_BIN"]) if os.environ.get("M2Z_BIN") else os.path.join(REPO, "build")
    p = os.path.join(build, "tests", "conf_reference")
    if not os.path.exists(p):
        pytest.fail("%s not built (make integration builds it)" % p)
    return os.environ.get("M2Z_QEMU", "").split() + [p]


@pytest.fixture(scope="module")
def reference():
    r = subprocess.run(tool(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "### [zeebe]" in r.stdout, r.stderr
    return r.stdout


def keys_by_section(md):
    """{section: [key, ...]} from '### [name]' or '#### [name]' headings and table rows."""
    out, sec = {}, None
    for line in md.splitlines():
        m = re.match(r"^#{3,4} \[(.+)\]$", line)
        if m:
            sec = out.setdefault(m.group(1), [])
        elif sec is not None and line.startswith("| `"):
            sec.append(line.split("`")[1])
    return out


def test_ini5_keys_section_is_generated_from_the_option_table(reference):
    r = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "scripts/manref.py"), "--check", MAN5],
                       input=reference, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "man/mqtt2zeebe.ini.5 is stale (run make man):\n" + r.stdout + r.stderr


def test_ini5_and_readme_list_the_same_keys(reference):
    want = keys_by_section(reference)
    assert len(want) >= 7 and all(want.values()), want
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    keys = readme[readme.index("### Keys"):readme.index("### Routes")]
    assert keys_by_section(keys) == want, "README.md 'Keys' tables differ from conf_print_reference()"
    page = open(MAN5).read()
    got, sec = {}, None
    lines = page.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(".SS "):
            sec = got.setdefault(line[4:].strip("[]").replace("\\-", "-"), [])
        elif line == ".TP" and sec is not None and lines[i + 1].startswith("\\fB"):
            sec.append(lines[i + 1][3:].split("\\fR")[0].replace("\\-", "-"))
    assert got == want


def lint(page):
    if shutil.which("mandoc"):
        cmd = ["mandoc", "-Tlint", "-Wwarning", page]
    elif shutil.which("groff"):
        cmd = ["groff", "-man", "-ww", "-z", page]
    else:
        pytest.skip("neither mandoc nor groff installed")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return cmd, r


@pytest.mark.parametrize("page", [MAN8, MAN5], ids=["mqtt2zeebe.8", "mqtt2zeebe.ini.5"])
def test_page_renders_without_warnings(page):
    cmd, r = lint(page)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        "%s:\n%s%s" % (" ".join(cmd), r.stdout, r.stderr)
    if shutil.which("groff"):
        r = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_man8_documents_every_option_of_usage():
    src = open(os.path.join(REPO, "src", "main.c")).read()
    opts = re.findall(r'\{ "([a-z-]+)", (?:no|required)_argument', src)
    assert "check" in opts and "version" in opts, opts
    page = open(MAN8).read().replace("\\-", "-")
    for o in opts:
        assert re.search(r"^\.B[IR]? .*--%s\b" % re.escape(o), page, re.M), "mqtt2zeebe.8 lacks --" + o
    for sig in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP"):
        assert sig in page
    for section in ("OPTIONS", "SIGNALS", "EXIT STATUS", "ENVIRONMENT", "FILES"):
        assert "\n.SH %s\n" % section in page, section
