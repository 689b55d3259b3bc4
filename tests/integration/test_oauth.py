"""oauth.c + https.c + platform TLS against the real TokenServer on
loopback, driven by build*/tests/oauth_probe (make integration builds it).

Every run checks that neither the client secret nor any issued token shows
up in the probe's output, and that no sanitizer report appeared."""

import os
import re
import subprocess
import time

import pytest

from util import AUDIENCE, CLIENT_ID, CLIENT_SECRET, REPO

from peers.token_server import TokenServer

SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|ThreadSanitizer|runtime error: ")
TOKEN_OK_RE = re.compile(r"^token ok gen=(\d+) expires_in=(\S+)$", re.M)
STATS_RE = re.compile(r"^stats fetches=(\d+) failures=(\d+)$", re.M)


def probe_path():
    if os.environ.get("M2Z_OAUTH_PROBE"):
        return os.environ["M2Z_OAUTH_PROBE"]
    if os.environ.get("M2Z_BIN"):
        return os.path.join(os.path.dirname(os.environ["M2Z_BIN"]), "tests", "oauth_probe")
    return os.path.join(REPO, "build", "tests", "oauth_probe")


@pytest.fixture(scope="module")
def probe():
    p = probe_path()
    if not os.path.exists(p):
        if os.environ.get("M2Z_BIN") or os.environ.get("M2Z_OAUTH_PROBE"):
            pytest.fail("%s not built" % p)
        pytest.skip("%s not built (make build/tests/oauth_probe)" % p)
    return p


@pytest.fixture
def servers():
    made = []

    def make(**kw):
        kw.setdefault("client_id", CLIENT_ID)
        kw.setdefault("client_secret", CLIENT_SECRET)
        kw.setdefault("audience", AUDIENCE)
        ts = TokenServer(port=0, **kw).start()
        made.append(ts)
        return ts
    yield make
    for ts in made:
        ts.stop()


class Run:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.elapsed = elapsed
        self.tokens = [(int(g), e) for g, e in TOKEN_OK_RE.findall(self.out)]
        m = STATS_RE.search(self.out)
        self.fetches, self.failures = (int(m.group(1)), int(m.group(2))) if m else (None, None)


def run_probe(probe, ts, *args, ca=None, secret=CLIENT_SECRET, timeout=60, url=None):
    cmd = [probe, "--url", url or ts.url, "--client-id", CLIENT_ID, "--audience", AUDIENCE,
           "--log-level", "debug"]
    if ca:
        cmd += ["--ca-file", ca]
    cmd += [str(a) for a in args]
    env = dict(os.environ, M2Z_PROBE_SECRET=secret)
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    r = Run(p, time.monotonic() - t0)
    both = r.out + r.err
    assert secret not in both, "client secret leaked into the probe output"
    for tok in ts.tokens_issued():
        assert tok not in both, "a token leaked into the probe output"
    assert not SANITIZER_RE.search(r.err), r.err
    return r


def posts(ts):
    return ts.form_requests()


# ---------------------------------------------------------------- happy path

def test_token_over_https_sends_the_exact_request(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key)
    r = run_probe(probe, ts, "--wait", 5000, ca=certs.ca)
    assert r.rc == 0, r.err
    assert len(r.tokens) == 1 and r.tokens[0][0] == 1
    assert 295 <= int(r.tokens[0][1]) <= 300
    assert ts.fetches == 1 and r.fetches == 1 and r.failures == 0
    [req] = posts(ts)
    h = req["headers"]
    assert req["path"] == "/oauth/token"
    assert h["content-type"] == "application/x-www-form-urlencoded"
    assert h["accept"] == "application/json"
    assert re.match(r"^mqtt2zeebe/\S+$", h["user-agent"])
    assert h["host"] == "localhost:%d" % ts.port
    assert h["connection"].lower() == "close"
    assert "authorization" not in h        # credentials in the body, not Basic
    assert req["form"] == {"grant_type": "client_credentials", "client_id": CLIENT_ID,
                           "client_secret": CLIENT_SECRET, "audience": AUDIENCE}
    assert "token from %s" % ts.url in r.err     # the endpoint is logged


def test_scope_and_special_characters_are_encoded(probe, servers, certs):
    secret = "s3 cr&t=+%/é" + CLIENT_SECRET
    ts = servers(cert=certs.server_cert, key=certs.server_key, client_secret=secret,
                 scope="Zeebe Operate")
    r = run_probe(probe, ts, "--wait", 5000, "--scope", "Zeebe Operate", ca=certs.ca,
                  secret=secret)
    assert r.rc == 0, r.err
    [req] = posts(ts)
    assert req["form"]["client_secret"] == secret
    assert req["form"]["scope"] == "Zeebe Operate"


def test_chunked_response_and_string_expires_in(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key, chunked=True,
                 expires_in=120, expires_in_as_string=True)
    r = run_probe(probe, ts, "--wait", 5000, ca=certs.ca)
    assert r.rc == 0, r.err
    assert r.tokens[0][0] == 1 and 115 <= int(r.tokens[0][1]) <= 120


def test_no_expires_in_never_expires(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key, expires_in=None)
    r = run_probe(probe, ts, "--wait", 5000, "--hold", 1, ca=certs.ca)
    assert r.rc == 0, r.err
    assert r.tokens == [(1, "never")]
    assert ts.fetches == 1


def test_plain_http_works_with_a_warning(probe, servers):
    ts = servers()
    assert ts.url.startswith("http://localhost:")
    r = run_probe(probe, ts, "--wait", 5000)
    assert r.rc == 0, r.err
    assert r.tokens[0][0] == 1
    assert re.search(r"WARN .*plain http.*client secret travels in clear", r.err)


# ---------------------------------------------------------------- TLS failures

def test_wrong_ca_gets_no_token(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key)
    r = run_probe(probe, ts, "--wait", 2000, ca=certs.other_ca)
    assert r.rc == 1 and "token none" in r.out
    assert r.tokens == []
    assert "certificate verification failed" in r.err
    assert "not correctly signed by the trusted CA" in r.err
    assert ts.url in r.err
    assert ts.fetches == 0 and posts(ts) == []
    assert r.failures >= 1


def test_system_store_does_not_trust_the_test_ca(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key)
    r = run_probe(probe, ts, "--wait", 1500)
    assert r.rc == 1 and r.tokens == []
    assert "certificate verification failed" in r.err
    assert ts.fetches == 0


def test_hostname_mismatch_gets_no_token(probe, servers, certs):
    ts = servers(cert=certs.wrong_name_cert, key=certs.wrong_name_key)
    r = run_probe(probe, ts, "--wait", 2000, ca=certs.ca)
    assert r.rc == 1 and r.tokens == []
    assert "certificate verification failed" in r.err
    assert "CN" in r.err                       # mbedTLS: "...(CN) does not match..."
    assert "not correctly signed" not in r.err  # the chain itself is fine
    assert ts.fetches == 0


def test_wrong_credentials_report_the_oauth_error(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key)
    r = run_probe(probe, ts, "--wait", 1500, ca=certs.ca, secret="not-the-" + CLIENT_SECRET)
    assert r.rc == 1 and r.tokens == []
    assert "HTTP 401" in r.err and "invalid_client" in r.err
    assert "bad client credentials" in r.err    # error_description
    assert ts.fetches == 0 and len(posts(ts)) >= 1


# ---------------------------------------------------------------- refresh, backoff

def test_refresh_ahead_of_expiry(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key, expires_in=12)
    r = run_probe(probe, ts, "--wait", 5000, "--refresh-ahead-ms", 10000, "--hold", 7,
                  "--min-refresh-ms", 1000, ca=certs.ca)
    assert r.rc == 0, r.err
    gens = [g for g, _ in r.tokens]
    assert gens[:2] == [1, 2], r.out
    reqs = posts(ts)
    # A lifetime (12 s) barely over the skew (10 s): refreshed early but not
    # hammered - a few seconds apart, and only a handful in 7 s.
    gap = reqs[1]["time"] - reqs[0]["time"]
    assert 1.5 <= gap <= 5.0, gap
    assert 2 <= ts.fetches <= 4
    assert r.failures == 0


def test_backoff_while_failing_then_recovery(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key)
    ts.fail_next(3, status=500)
    r = run_probe(probe, ts, "--wait", 30000, "--min-refresh-ms", 100, ca=certs.ca)
    assert r.rc == 0, r.err
    assert r.tokens[0][0] == 1
    reqs = posts(ts)
    assert [q["status"] for q in reqs] == [500, 500, 500, 200]
    assert r.failures == 3 and r.fetches == 1
    assert "HTTP 500" in r.err and "server_error" in r.err and "injected failure" in r.err
    gaps = [b["time"] - a["time"] for a, b in zip(reqs, reqs[1:])]
    # Each wait drawn from [c/2, c], c = 1 s * 2^n.
    for n, g in enumerate(gaps):
        assert 0.45 * 2 ** n <= g <= 1.0 * 2 ** n + 0.5, gaps


def test_endpoint_down_is_retried_with_backoff(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key)
    ts.set_down(True, mode="close")
    env = dict(os.environ, M2Z_PROBE_SECRET=CLIENT_SECRET)
    p = subprocess.Popen([probe, "--url", ts.url, "--client-id", CLIENT_ID, "--audience",
                          AUDIENCE, "--ca-file", certs.ca, "--wait", "40000",
                          "--min-refresh-ms", "100"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        refused = ts.refused
        # Without backoff this would be hundreds; at least 1 s, 2 s... apart.
        assert 2 <= refused <= 10, refused
        ts.set_down(False)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert "token ok gen=1" in out
    assert CLIENT_SECRET not in out + err
    assert ts.fetches == 1
    m = STATS_RE.search(out)
    assert int(m.group(2)) >= refused


def test_invalidate_triggers_exactly_one_fetch(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key)
    r = run_probe(probe, ts, "--wait", 5000, "--invalidate", "--hold", 2,
                  "--min-refresh-ms", 100, ca=certs.ca)
    assert r.rc == 0, r.err
    assert [g for g, _ in r.tokens] == [1, 2]
    # Generation 1 reported twice, then again after 2 arrived: one fetch.
    assert ts.fetches == 2 and len(posts(ts)) == 2
    assert "generation 1 rejected" in r.err


def test_unreachable_endpoint_fails_fast(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key)
    url = ts.url
    ts.stop()
    r = run_probe(probe, ts, "--wait", 1500, ca=certs.ca, url=url)
    assert r.rc == 1
    assert "connect localhost" in r.err and "refused" in r.err.lower()


def test_shutdown_aborts_a_fetch_in_flight(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key)
    ts.delay_s = 10
    r = run_probe(probe, ts, "--wait", 800, "--timeout-ms", 20000, ca=certs.ca)
    assert r.rc == 1 and r.tokens == []
    # oauth_free cancels the request instead of waiting out 10 s / 20 s.
    assert r.elapsed < 4.0, r.elapsed
    assert r.failures in (0, 1)


def test_slow_endpoint_times_out(probe, servers, certs):
    ts = servers(cert=certs.server_cert, key=certs.server_key)
    ts.delay_s = 3
    r = run_probe(probe, ts, "--wait", 2500, "--timeout-ms", 1000, ca=certs.ca)
    assert r.rc == 1 and r.tokens == []
    assert "timed out" in r.err
    assert r.failures >= 1
