"""The command line without peers: --check, config errors (file:line:),
--dry-run, --version, --help."""

import hashlib
import json
import pathlib
import re

import pytest

import util

SECRET = "cli-secret-9f8e7d"
PASSWORD = "cli-mqtt-pw-1a2b3c"

BASE = """\
[zeebe]
address = localhost:26500
ca_certificate = {ca}
request_timeout = 5s

[oauth]
client_id = cli-client
client_secret = {secret}
url = https://localhost:1/oauth/token
audience = zeebe.cli

[mqtt]
host = 127.0.0.1
port = 1883
username = dev
password = {password}

[spool]
directory = {spool}

[route pump]
topic = plant/+/pump/+/telemetry
message_name = pump-telemetry
correlation_key = pump-{{4}}-{{/serial}}
message_id = {{/seq|noseq}}-{{4}}
ttl = 5m
tenant_id = {{2}}
var.site = {{2}}
topic_variable = mqttTopic

[route door]
topic = plant/+/door/+
message_name = door-changed
correlation_key = {{2}}-{{4}}
"""


@pytest.fixture
def write_conf(tmp_path, m2z_bin):
    def write(text, name="m2z.ini"):
        p = tmp_path / name
        p.write_text(text)
        return str(p)
    return write


@pytest.fixture
def good_conf(write_conf, tmp_path, certs):
    return write_conf(BASE.format(secret=SECRET, password=PASSWORD, spool=tmp_path / "spool",
                                  ca=certs.ca))


def out(r):
    return r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------- --check

def test_check_lists_routes_and_hides_secrets(good_conf):
    r = util.run_cli(["--check", "-c", good_conf])
    so, se = out(r)
    assert r.returncode == 0, se
    text = so + se
    # Both routes, in file order, with their filters.
    assert "pump" in so and "door" in so
    assert "plant/+/pump/+/telemetry" in so and "plant/+/door/+" in so
    assert so.index("plant/+/pump/+/telemetry") < so.index("plant/+/door/+")
    assert "pump-{4}-{/serial}" in so
    # Resolved values appear, secrets do not.
    assert "localhost:26500" in so
    assert "***" in so
    assert SECRET not in text and PASSWORD not in text


def test_check_applies_environment(good_conf):
    r = util.run_cli(["--check", "-c", good_conf],
                     env={"ZEEBE_ADDRESS": "gw.example.test:443", "ZEEBE_CLIENT_SECRET": "env-secret-x1"})
    so, se = out(r)
    assert r.returncode == 0, se
    assert "gw.example.test:443" in so
    assert "localhost:26500" not in so
    assert "env-secret-x1" not in so + se


def source_of(stdout, section, key):
    """The '; SOURCE' after KEY in [SECTION] of the --check output."""
    sec = None
    for line in stdout.splitlines():
        m = re.match(r"^\[(.+)\]$", line)
        if m:
            sec = m.group(1)
            continue
        m = re.match(r"^(\S+) = .*? +; (.+)$", line)
        if sec == section and m and m.group(1) == key:
            return m.group(2)
    raise AssertionError("no %s in [%s] of:\n%s" % (key, section, stdout))


def test_check_shows_where_each_value_came_from(good_conf):
    text = open(good_conf).read()
    r = util.run_cli(["--check", "-c", good_conf],
                     env={"ZEEBE_ADDRESS": "gw.example.test:443", "ZEEBE_CLIENT_SECRET": "env-secret-x1"})
    so, se = out(r)
    assert r.returncode == 0, se
    assert source_of(so, "zeebe", "address") == "env ZEEBE_ADDRESS"
    assert source_of(so, "oauth", "client_secret") == "env ZEEBE_CLIENT_SECRET"
    assert source_of(so, "zeebe", "request_timeout") == "%s:%d" % (good_conf, line_of(text, "request_timeout"))
    assert source_of(so, "mqtt", "password") == "%s:%d" % (good_conf, line_of(text, "password ="))
    assert source_of(so, "zeebe", "keepalive") == "default"
    assert source_of(so, "spool", "sync") == "default"
    assert source_of(so, "route pump", "ttl") == "%s:%d" % (good_conf, line_of(text, "ttl = 5m"))
    assert source_of(so, "route door", "ttl") == "default"
    assert "env-secret-x1" not in so + se


def check_fails(write_conf, text, *words):
    path = write_conf(text)
    r = util.run_cli(["--check", "-c", path])
    so, se = out(r)
    assert r.returncode == 2, "exit %d, stderr=%s" % (r.returncode, se)
    assert "problem(s) with files the agent needs" in se, se
    for w in words:
        assert w in se, "%r not in %r" % (w, se)
    return path, se


def conf_error(write_conf, text, *words):
    """--check refuses TEXT as a configuration error (exit 2) naming WORDS."""
    path = write_conf(text)
    r = util.run_cli(["--check", "-c", path])
    so, se = out(r)
    assert r.returncode == 2, "exit %d, stderr=%s" % (r.returncode, se)
    for w in words:
        assert w in se, "%r not in %r" % (w, se)
    return path, se


def test_check_missing_ca_file_exits_2_with_its_line(write_conf, tmp_path):
    text = base(tmp_path)
    text = text.replace("ca_certificate = %s" % (tmp_path / "ca.pem"), "ca_certificate = /nonexistent/ca.pem")
    path, se = conf_error(write_conf, text, "/nonexistent/ca.pem", "No such file")
    assert "%s:%d: [zeebe] ca_certificate" % (path, line_of(text, "/nonexistent/ca.pem")) in se


def test_check_ca_file_that_is_not_pem(write_conf, tmp_path, certs):
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not a certificate\n")
    text = BASE.format(secret=SECRET, password=PASSWORD, spool=tmp_path / "spool", ca=junk)
    conf_error(write_conf, text, "expected a PEM certificate file", str(junk))


def test_check_ca_from_environment_names_the_variable(write_conf, tmp_path, certs):
    text = BASE.format(secret=SECRET, password=PASSWORD, spool=tmp_path / "spool", ca=certs.ca)
    text = text.replace("ca_certificate = %s\n" % certs.ca, "")
    path = write_conf(text)
    r = util.run_cli(["--check", "-c", path], env={"ZEEBE_CA_CERTIFICATE_PATH": str(tmp_path / "gone.pem")})
    so, se = out(r)
    assert r.returncode == 2, se
    assert "environment ZEEBE_CA_CERTIFICATE_PATH: [zeebe] ca_certificate: cannot read the CA file" in se, se


def test_check_mqtt_tls_files(write_conf, tmp_path, certs):
    text = BASE.format(secret=SECRET, password=PASSWORD, spool=tmp_path / "spool", ca=certs.ca)
    text = text.replace("password = %s\n" % PASSWORD, "password = %s\ntls = true\nca_file = %s\n"
                        "cert_file = %s\nkey_file = %s\n" % (PASSWORD, certs.ca, tmp_path / "no.crt",
                                                             certs.server_key))
    path, se = check_fails(write_conf, text, "[mqtt] cert_file", "no.crt")
    assert "ca_file" not in se and "key_file" not in se, se


def test_check_spool_directory_not_creatable(write_conf, tmp_path, certs):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    text = BASE.format(secret=SECRET, password=PASSWORD, spool=blocker / "spool", ca=certs.ca)
    path, se = check_fails(write_conf, text, "[spool] directory", "is not a directory")
    assert "%s:%d:" % (path, line_of(text, "directory =")) in se


def test_check_spool_directory_creatable_is_fine(write_conf, tmp_path, certs):
    spool = tmp_path / "not" / "yet" / "spool"
    path = write_conf(BASE.format(secret=SECRET, password=PASSWORD, spool=spool, ca=certs.ca))
    r = util.run_cli(["--check", "-c", path])
    assert r.returncode == 0, out(r)
    assert not spool.exists() and not (tmp_path / "not").exists(), "--check must not create anything"


# ---------------------------------------------------------------- errors

def _lines(text):
    return text.splitlines()


def line_of(text, needle):
    """1-based line number of the first line containing NEEDLE."""
    for i, l in enumerate(_lines(text), 1):
        if needle in l:
            return i
    raise AssertionError("%r not in config" % needle)


def assert_config_error(write_conf, text, needle, words=()):
    path = write_conf(text)
    r = util.run_cli(["--check", "-c", path])
    so, se = out(r)
    assert r.returncode == 2, "exit %d, stdout=%s stderr=%s" % (r.returncode, so, se)
    want = line_of(text, needle)
    m = re.search(r"^%s:(\d+): (.+)$" % re.escape(path), se, re.M)
    assert m, "no 'FILE:LINE: message' on stderr: %r" % se
    assert int(m.group(1)) == want, "error points at line %s, expected %d (%r): %s" % (
        m.group(1), want, needle, se)
    for w in words:
        assert w.lower() in m.group(2).lower(), "message %r lacks %r" % (m.group(2), w)
    return m.group(2)


def base(tmp_path):
    # The CA file must exist and be PEM (checked like every other config error).
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return BASE.format(secret=SECRET, password=PASSWORD, spool=tmp_path / "spool", ca=ca)


def test_error_unknown_section(write_conf, tmp_path):
    text = base(tmp_path) + "\n[zeebee]\naddress = x:1\n"
    assert_config_error(write_conf, text, "[zeebee]", ["zeebee"])


def test_error_unknown_key(write_conf, tmp_path):
    text = base(tmp_path).replace("port = 1883\n", "port = 1883\nhostname = broker\n")
    assert_config_error(write_conf, text, "hostname = broker", ["hostname"])


def test_error_unknown_route_key(write_conf, tmp_path):
    text = base(tmp_path).replace("ttl = 5m\n", "ttl = 5m\ncorrelation = x\n")
    assert_config_error(write_conf, text, "correlation = x", ["correlation"])


@pytest.mark.parametrize("old,new,needle", [
    ("request_timeout = 5s", "request_timeout = 5 parsecs", "request_timeout"),
    ("ttl = 5m", "ttl = soon", "ttl = soon"),
    ("[spool]\n", "[spool]\nmax_bytes = 4 MiBs\n", "max_bytes"),
    ("[spool]\n", "[spool]\nmax_bytes = -5\n", "max_bytes"),
    ("[zeebe]\n", "[zeebe]\ninsecure = maybe\n", "insecure"),
    ("port = 1883", "port = 70000", "port = 70000"),
])
def test_error_bad_value(write_conf, tmp_path, old, new, needle):
    text = base(tmp_path).replace(old, new, 1)
    assert text != base(tmp_path)
    assert_config_error(write_conf, text, needle)


def test_error_missing_required_route_key(write_conf, tmp_path):
    text = base(tmp_path) + "\n[route broken]\ntopic = x/+\nmessage_name = m\n"
    msg = assert_config_error(write_conf, text, "[route broken]")
    assert "correlation_key" in msg


@pytest.mark.parametrize("tmpl", ["{3", "pump-{/serial", "{}", "{x}", "{0}"])
def test_error_bad_template(write_conf, tmp_path, tmpl):
    text = base(tmp_path).replace("correlation_key = {2}-{4}", "correlation_key = " + tmpl)
    assert_config_error(write_conf, text, "correlation_key = " + tmpl)


@pytest.mark.parametrize("flt", ["plant/#/door", "plant/do+or/x", "plant/door#"])
def test_error_bad_topic_filter(write_conf, tmp_path, flt):
    text = base(tmp_path).replace("topic = plant/+/door/+", "topic = " + flt)
    assert_config_error(write_conf, text, "topic = " + flt)


def test_long_line_is_read_whole_and_errors_point_at_the_right_line(write_conf, tmp_path):
    # A 300-byte value (Debian's libinih would cut it at 200 bytes and
    # carry on with the rest as a new "line"), then an error after it.
    long_name = "n" * 300
    text = base(tmp_path).replace("message_name = door-changed", "message_name = " + long_name)
    text += "\n[mqtt]\nbogus_key = 1\n"
    assert_config_error(write_conf, text, "bogus_key")
    # The long value itself is accepted and kept whole.
    ok = base(tmp_path).replace("message_name = door-changed", "message_name = " + long_name)
    r = util.run_cli(["--dry-run", "-c", write_conf(ok, "ok.ini"), "--topic", "plant/a/door/3",
                      "--payload", "open"])
    so, se = out(r)
    assert r.returncode == 0, se
    assert json.loads(so)["name"] == long_name


def test_error_line_longer_than_limit(write_conf, tmp_path):
    text = base(tmp_path).replace("message_name = door-changed", "message_name = " + "x" * 5000)
    assert_config_error(write_conf, text, "x" * 100)


def test_error_oauth_half_configured(write_conf, tmp_path):
    text = base(tmp_path).replace("client_secret = %s\n" % SECRET, "")
    msg = assert_config_error(write_conf, text, "client_id = cli-client")
    assert "client_secret" in msg
    text = base(tmp_path).replace("client_id = cli-client\n", "")
    msg = assert_config_error(write_conf, text, "client_secret =")
    assert "client_id" in msg
    assert SECRET not in msg


def test_error_missing_file(tmp_path, m2z_bin):
    r = util.run_cli(["--check", "-c", str(tmp_path / "nope.ini")])
    assert r.returncode == 2
    assert "nope.ini" in out(r)[1]


# ---------------------------------------------------------------- --dry-run

def dry(path, topic, payload):
    r = util.run_cli(["--dry-run", "-c", path, "--topic", topic, "--payload", payload])
    so, se = out(r)
    return r.returncode, so, se


def test_dry_run_renders_templates(good_conf):
    rc, so, se = dry(good_conf, "plant/north/pump/7/telemetry", '{"serial":"A7","temp":21.5,"seq":42}')
    assert rc == 0, se
    lines = [l for l in so.splitlines() if l.strip()]
    assert len(lines) == 1, so
    assert json.loads(lines[0]) == {
        "route": "pump",
        "name": "pump-telemetry",
        "correlationKey": "pump-7-A7",
        "messageId": "42-7",
        "timeToLive": 300000,
        "tenantId": "north",
        "variables": {"serial": "A7", "temp": 21.5, "seq": 42, "site": "north",
                      "mqttTopic": "plant/north/pump/7/telemetry"},
    }


def test_dry_run_default_and_wrapping(good_conf):
    rc, so, se = dry(good_conf, "plant/south/pump/9/telemetry", '{"serial":12}')
    assert rc == 0, se
    d = json.loads(so)
    assert d["correlationKey"] == "pump-9-12"      # a number as its JSON text
    assert d["messageId"] == "noseq-9"             # {x|default}
    rc, so, se = dry(good_conf, "plant/south/door/3", "open")
    assert rc == 0, se
    d = json.loads(so)
    assert d["route"] == "door" and d["name"] == "door-changed"
    assert d["correlationKey"] == "south-3"
    assert d["timeToLive"] == 3600000              # default ttl 1h
    assert d["tenantId"] == ""
    assert d["variables"] == {"value": "open"}     # non-JSON text wrapped
    assert re.fullmatch(r"m2z-[0-9a-f]{32}", d["messageId"]), d["messageId"]


def test_dry_run_auto_message_id_is_deterministic(good_conf):
    ids = []
    for payload in ["open", "open", "closed"]:
        rc, so, se = dry(good_conf, "plant/south/door/3", payload)
        assert rc == 0, se
        ids.append(json.loads(so)["messageId"])
    rc, so, se = dry(good_conf, "plant/north/door/3", "open")
    ids.append(json.loads(so)["messageId"])
    assert ids[0] == ids[1]
    assert len({ids[0], ids[2], ids[3]}) == 3
    # Not a hash of the payload alone.
    assert ids[0] != "m2z-" + hashlib.sha256(b"open").hexdigest()[:32]


def test_dry_run_dead_letter_reason(good_conf):
    rc, so, se = dry(good_conf, "plant/north/pump/7/telemetry", '{"temp":21.5}')
    assert rc == 1
    assert so.strip() == ""
    assert "correlation_key" in se and "/serial" in se, se
    rc, so, se = dry(good_conf, "plant/north/pump/7/telemetry", "not json")
    assert rc == 1
    assert "correlation_key" in se, se


def test_dry_run_unrouted(good_conf):
    rc, so, se = dry(good_conf, "elsewhere/x", "{}")
    assert rc == 1
    assert "no route" in se.lower(), se


# ---------------------------------------------------------------- misc

def test_version(m2z_bin):
    r = util.run_cli(["--version"])
    so, se = out(r)
    assert r.returncode == 0, se
    with open(util.REPO + "/Makefile") as f:
        ver = re.search(r"^VERSION := (\S+)", f.read(), re.M).group(1)
    assert so.strip() == "mqtt2zeebe " + ver


def test_help(m2z_bin):
    r = util.run_cli(["--help"])
    so, se = out(r)
    assert r.returncode == 0
    for opt in ("--check", "--dry-run", "--check-connection", "--version", "-c"):
        assert opt in so, opt


def test_usage_errors_exit_2(m2z_bin, good_conf):
    assert util.run_cli([]).returncode == 2
    assert util.run_cli(["--no-such-option", "-c", good_conf]).returncode == 2
    assert util.run_cli(["--dry-run", "-c", good_conf, "--topic", "a/b"]).returncode == 2


# ---------------------------------------------------------------- README examples

def readme_block(after):
    """The first ```ini block after the heading AFTER in README.md."""
    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = text.index(after)
    block = text.index("```ini\n", start) + len("```ini\n")
    return text[block:text.index("```", block)]


def test_readme_saas_example_renders_what_it_claims(write_conf, tmp_path):
    """Issue 9: var.plant = {1} on plant/+/pump/+/alarm gave "plant"."""
    ini = readme_block("### Example: Camunda 8 SaaS")
    # the console's credentials file, as downloaded (values made up)
    creds = tmp_path / "credentials"
    creds.write_text("export ZEEBE_GRPC_ADDRESS='grpcs://abc-123.bru-2.zeebe.camunda.io:443'\n"
                     "export CAMUNDA_CLIENT_ID='client-x'\nexport CAMUNDA_CLIENT_SECRET='secret-x'\n"
                     "export CAMUNDA_OAUTH_URL='https://login.cloud.camunda.io/oauth/token'\n")
    ini = ini.replace("/etc/mqtt2zeebe/credentials", str(creds))
    path = write_conf(ini + "\n[spool]\ndirectory = %s\n" % (tmp_path / "spool"))
    rc, so, se = dry(path, "plant/hamburg/pump/7/alarm", '{"serial":"P-7"}')
    assert rc == 0, se
    d = json.loads(so)
    assert (d["route"], d["name"], d["correlationKey"]) == ("pump-alarm", "pump-alarm", "P-7")
    v = d["variables"]
    assert (v["serial"], v["plant"], v["pump"]) == ("P-7", "hamburg", "7"), v
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", v["receivedAt"]), v
    rc, so, se = dry(path, "plant/hamburg/telemetry/pressure", '{"seq":12}')
    assert rc == 0, se
    d = json.loads(so)
    assert (d["name"], d["correlationKey"], d["messageId"]) == ("telemetry-pressure", "hamburg", "hamburg-12")


def test_dry_run_keeps_numbers_and_strings_exact(write_conf, tmp_path):
    """Issue 8: 1e400 became null and "ab\\u0000cd" became "ab" when the
    payload was re-serialised; now the payload's own text is passed on."""
    conf = ("[spool]\ndirectory = %s\n[route r]\ntopic = d/+\nmessage_name = m\n"
            "correlation_key = {1}\ntopic_variable = topic\nvar.big = {/big}\n") % (tmp_path / "spool")
    path = write_conf(conf)
    payload = '{"inf": 1e400, "s": "ab\\u0000cd", "big": 12345678901234567890123, "f": 0.10}'
    rc, so, se = dry(path, "d/1", payload)
    assert rc == 0, se
    raw = so[so.index('"variables":'):]
    assert '"inf":1e400' in raw and '"s":"ab\\u0000cd"' in raw and '"f":0.10' in raw, raw
    assert '"big":12345678901234567890123' in raw and '"topic":"d/1"' in raw, raw
    # where the string must become a key, a NUL is a dead letter naming the field
    path = write_conf(conf.replace("correlation_key = {1}", "correlation_key = {/s}"), "nul.ini")
    rc, so, se = dry(path, "d/1", payload)
    assert rc != 0
    assert "correlation_key: JSON pointer /s is a string holding \\u0000" in so + se, so + se


def test_demo_door_route_keeps_a_repeated_open(tmp_path, certs):
    """conf/demo.ini shows the habit: a repeated identical state is a new
    message (its id comes from the sensor's sequence), not a duplicate."""
    repo = pathlib.Path(__file__).resolve().parents[2]
    text = (repo / "conf" / "demo.ini").read_text()
    text = re.sub(r"@[A-Z_]+PORT@", "1883", text).replace("@CA@", certs.ca)
    text = text.replace("@SPOOL@", str(tmp_path / "spool"))
    conf = tmp_path / "demo.ini"
    conf.write_text(text)
    ids = []
    for payload in ('{"state":"open","seq":41}', '{"state":"open","seq":43}'):
        rc, so, se = dry(str(conf), "plant/bremen/door/3", payload)
        assert rc == 0, se
        ids.append(json.loads(so.strip().splitlines()[-1])["messageId"])
    assert ids == ["door-bremen-3-41", "door-bremen-3-43"]
