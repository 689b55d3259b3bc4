"""Today's Camunda conventions (issue 10), against the real peers: the
console's credentials files as downloaded, the 8.8 Java names, the token
cache on disk across restarts, clear answers to a 401/400 from the token
endpoint, basic authentication, and conflicting settings."""

import glob
import os
import re
import stat
import time

import pytest

import util
from util import AUDIENCE, CLIENT_ID, CLIENT_SECRET, field, gw_requests, meta, wait_until


def wait_requests(gw, n, timeout=20.0):
    return wait_until(lambda: (lambda rs: rs if len(rs) >= n else None)(gw_requests(gw)),
                      timeout, what="%d request(s) at the gateway" % n)


def write_creds(tmp_path, lines, name="credentials"):
    path = tmp_path / name
    path.write_text("".join(lines))
    os.chmod(path, 0o600)
    return str(path)


def older_console(gw, ts, certs):
    return ["export ZEEBE_ADDRESS='localhost:%d'\n" % gw.port,
            "export ZEEBE_CLIENT_ID='%s'\n" % CLIENT_ID,
            "export ZEEBE_CLIENT_SECRET='%s'\n" % CLIENT_SECRET,
            "export ZEEBE_AUTHORIZATION_SERVER_URL='%s'\n" % ts.url,
            "export ZEEBE_TOKEN_AUDIENCE='%s'\n" % AUDIENCE,
            "export CAMUNDA_CLUSTER_ID='c0ffee'\n",
            "export CAMUNDA_CLUSTER_REGION='bru-2'\n",
            "export CAMUNDA_CREDENTIALS_SCOPES='Zeebe'\n",
            "export CAMUNDA_OAUTH_URL='%s'\n" % ts.url]


def newer_console(gw, ts, certs):
    return ["# Camunda 8 credentials, cluster c0ffee\n",
            "export ZEEBE_GRPC_ADDRESS='grpcs://localhost:%d'\n" % gw.port,
            "export ZEEBE_REST_ADDRESS='https://localhost:1/c0ffee'\n",
            "export ZEEBE_TOKEN_AUDIENCE='%s'\n" % AUDIENCE,
            "export CAMUNDA_CLUSTER_ID='c0ffee'\n",
            "export CAMUNDA_CLIENT_ID='%s'\n" % CLIENT_ID,
            "export CAMUNDA_CLIENT_SECRET='%s'\n" % CLIENT_SECRET,
            "export CAMUNDA_CLUSTER_REGION='bru-2'\n",
            "export CAMUNDA_CREDENTIALS_SCOPES='Zeebe'\n",
            "export CAMUNDA_OAUTH_URL='%s'\n" % ts.url]


def java_88(gw, ts, certs):
    return ["CAMUNDA_GRPC_ADDRESS=https://localhost:%d/\n" % gw.port,
            "CAMUNDA_CLIENT_ID=\"%s\"\n" % CLIENT_ID,
            "CAMUNDA_CLIENT_SECRET='%s'\n" % CLIENT_SECRET,
            "CAMUNDA_AUTHORIZATION_SERVER_URL=%s\n" % ts.url,
            "CAMUNDA_TOKEN_AUDIENCE=%s  # the gateway's audience\n" % AUDIENCE,
            "CAMUNDA_CA_CERTIFICATE_PATH='%s'\n" % certs.ca]


STYLES = {"older_console": older_console, "newer_console": newer_console, "java_88": java_88}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_credentials_file_styles_deliver(style, tmp_path, agent, gateway, token_server, certs, publish):
    path = write_creds(tmp_path, STYLES[style](gateway, token_server, certs))
    sections = {"zeebe": {"credentials_file": path}}
    if style != "java_88":   # the console's files carry no CA; SaaS uses public roots
        sections = {"zeebe": {"credentials_file": path, "ca_certificate": certs.ca},
                    "oauth": {"ca_certificate": certs.ca}}
    a = agent(gateway=None, oauth=False, sections=sections)
    publish("m2z/site/%s/event" % style, {"n": 1})
    (r,) = wait_requests(gateway, 1)
    assert field(r, "correlationKey") == style
    auth = meta(r, "authorization")
    assert auth.startswith("Bearer ") and token_server.is_valid(auth[len("Bearer "):])
    form = util.token_form(util.token_requests(token_server)[0])
    assert (form["client_id"], form["client_secret"], form["audience"]) == (CLIENT_ID, CLIENT_SECRET, AUDIENCE)
    assert "scope" not in form            # CAMUNDA_CREDENTIALS_SCOPES is informational
    log = a.log()
    assert CLIENT_SECRET not in log
    assert "is not a setting mqtt2zeebe reads" not in log
    assert "gateway localhost:%d over TLS" % gateway.port in log


def test_java_names_from_the_environment(agent, gateway, token_server, certs, publish):
    env = {line.split("=", 1)[0]: line.split("=", 1)[1].split("  #")[0].strip().strip("'\"")
           for line in java_88(gateway, token_server, certs)}
    env["ZEEBE_ADDRESS"] = "localhost:1"   # loses to CAMUNDA_GRPC_ADDRESS, with a warning
    a = agent(gateway=None, oauth=False, env=env)
    publish("m2z/site/envjava/event", {"n": 1})
    wait_requests(gateway, 1)
    assert re.search(r"WARN .*\[zeebe\] address: environment CAMUNDA_GRPC_ADDRESS .* and "
                     r"environment ZEEBE_ADDRESS \('localhost:1'\) differ", a.log())


def cache_files(a):
    return glob.glob(os.path.join(a.spool_dir, "oauth-token-*.json"))


def test_five_restarts_one_token_request(agent, gateway, token_server, publish):
    a = agent()
    for i in range(5):
        if i:
            a.start()
        publish("m2z/site/r%d/event" % i, {"i": i})
        wait_requests(gateway, i + 1)
        a.stop()
    print("5 agent starts, 5 events delivered: %d token request(s)" % len(util.token_requests(token_server)))
    assert util.token_fetches(token_server) == 1
    assert len(util.token_requests(token_server)) == 1
    (path,) = cache_files(a)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    body = open(path).read()
    assert CLIENT_SECRET not in body and util.issued_tokens(token_server)[0] in body
    assert len(re.findall(r"token from the cache", a.log())) == 4


def test_cache_corrupt_ignored_and_rejected_token_dropped(agent, gateway, token_server, publish):
    a = agent()
    wait_until(lambda: cache_files(a), 10, what="token cache file")
    a.stop()
    (path,) = cache_files(a)
    with open(path, "w") as f:
        f.write("{ garbage")
    a.start()
    assert re.search(r"WARN .*ignoring the token cache: .*not JSON", a.run_log())
    wait_until(lambda: util.token_fetches(token_server) == 2, 10, what="a new token after the corrupt cache")
    a.stop()
    # The gateway no longer accepts the cached token: it is dropped, not reused.
    token_server.revoke_all()
    a.start()
    assert "token from the cache" in a.run_log()
    publish("m2z/site/rev/event", {"n": 1})
    wait_requests(gateway, 1)
    assert util.token_fetches(token_server) == 3
    a.stop()
    a.start()                              # the new token was cached in place of the old
    publish("m2z/site/rev2/event", {"n": 2})
    wait_requests(gateway, 2)
    assert util.token_fetches(token_server) == 3


def test_cache_off(agent, gateway, token_server):
    a = agent(sections={"oauth": {"token_cache": "false"}})
    wait_until(lambda: util.token_fetches(token_server) == 1, 10, what="token")
    a.restart()
    wait_until(lambda: util.token_fetches(token_server) == 2, 10, what="second token")
    assert cache_files(a) == []


def test_check_connection_explains_401_at_once(tmp_path, agent, gateway, token_server, certs):
    token_server.reject_description = "secret for eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0 is wrong"
    lines = newer_console(gateway, token_server, certs)
    lines = [l.replace(CLIENT_SECRET, "not-the-secret") for l in lines]
    path = write_creds(tmp_path, lines)
    a = agent(gateway=None, oauth=False, start=False,
              sections={"zeebe": {"credentials_file": path, "ca_certificate": certs.ca},
                        "oauth": {"ca_certificate": certs.ca}})
    t0 = time.monotonic()
    r = util.run_cli(["--check-connection", "-c", a.conf_path])
    elapsed = time.monotonic() - t0
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 1, out + err
    print("--check-connection answered a 401 in %.2f s after %d token request(s)"
          % (elapsed, len(util.token_requests(token_server))))
    assert elapsed < 5, elapsed            # not the 10 s request timeout
    assert len(util.token_requests(token_server)) == 1
    want = ("rejected client id '%s' (from %s:6 (CAMUNDA_CLIENT_ID)) for audience '%s' (from %s:4 "
            "(ZEEBE_TOKEN_AUDIENCE)): HTTP 401, token endpoint error: invalid_client: secret for "
            "[redacted] is wrong. Check the client id and secret" % (CLIENT_ID, path, AUDIENCE, path))
    assert want in out, out
    assert "eyJ" not in out + err and "not-the-secret" not in out + err


def test_check_connection_explains_400_audience(agent, gateway, token_server):
    a = agent(start=False, sections={"oauth": {"audience": "wrong.audience"}})
    r = util.run_cli(["--check-connection", "-c", a.conf_path],
                     env={"CAMUNDA_TOKEN_AUDIENCE": "env.audience"})
    out = r.stdout.decode()
    assert r.returncode == 1
    assert ("for audience 'env.audience' (from environment CAMUNDA_TOKEN_AUDIENCE): HTTP 400, token "
            "endpoint error: invalid_request: unknown audience. Check the audience" in out), out
    assert ("client id '%s' (from %s:" % (CLIENT_ID, a.conf_path)) in out
    assert len(util.token_requests(token_server)) == 1


def test_running_agent_explains_once(agent, gateway, token_server):
    a = agent(sections={"oauth": {"client_secret": "wrong"}})
    wait_until(lambda: len(util.token_requests(token_server)) >= 3, 20, what="three token attempts")
    log = a.run_log()
    assert len(re.findall(r"rejected client id", log)) == 1, log
    assert "(from %s:" % a.conf_path in log


def test_basic_auth(agent, gateway_factory, publish):
    gw = gateway_factory(tls=True, basic_auth=("demo", "pw:with-colon"))
    env = {"CAMUNDA_AUTH_STRATEGY": "BASIC", "CAMUNDA_BASIC_AUTH_USERNAME": "demo",
           "CAMUNDA_BASIC_AUTH_PASSWORD": "pw:with-colon"}
    a = agent(gateway=gw, oauth=False, env=env)
    publish("m2z/site/basic/event", {"n": 1})
    (r,) = wait_requests(gw, 1)
    assert meta(r, "authorization").startswith("Basic ")
    assert "basic authentication" in a.log() and "pw:with-colon" not in a.log()


def test_check_reports_conflicts_with_both_sources(tmp_path, agent):
    path = write_creds(tmp_path, ["export ZEEBE_GRPC_ADDRESS='grpcs://saas.example:443'\n",
                                  "export ZEEBE_CLIENT_ID='from-file'\n",
                                  "export ZEEBE_TOKEN_AUDIENCE='zeebe.camunda.io'\n",
                                  "export CAMUNDA_TYPO='x'\n"])
    a = agent(gateway=None, oauth=False, start=False, broker=None,
              sections={"zeebe": {"credentials_file": path}})
    r = util.run_cli(["--check", "-c", a.conf_path],
                     env={"ZEEBE_ADDRESS": "saas.example:443", "CAMUNDA_CLIENT_ID": "from-env",
                          "ZEEBE_CLIENT_SECRET": "s"})
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, err
    assert "address = saas.example:443" in out and "insecure = false" in out
    assert "[zeebe] address" not in err        # same address written two ways: no conflict
    assert ("[oauth] client_id: environment CAMUNDA_CLIENT_ID ('from-env') and %s:2 (ZEEBE_CLIENT_ID) "
            "('from-file') differ; using environment CAMUNDA_CLIENT_ID" % path) in err
    assert "%s:4: CAMUNDA_TYPO is not a setting mqtt2zeebe reads; ignored" % path in err
    assert "# OAuth on" in out


@pytest.mark.parametrize("code,words", [
    ("PERMISSION_DENIED", "Expected to handle gRPC request PublishMessage with tenant identifier "
                          "'plant-b', but tenant is not authorized to perform this request"),
    ("NOT_FOUND", "Expected to publish a message for tenant 'plant-x', but no such tenant was found"),
])
def test_tenant_errors_are_dead_letters_with_the_gateways_words(code, words, agent, gateway_factory,
                                                                token_server, publish):
    gateway = gateway_factory(tls=True, token_check=token_server.is_valid, multi_tenancy=True)
    a = agent(gateway=gateway, routes={"t": {"topic": "m2z/+/+/event", "message_name": "m", "correlation_key": "{3}",
                            "tenant_id": "{2}"}})
    gateway.fail_next(code, 1, details=words)
    publish("m2z/plant-b/k1/event", {"n": 1})
    a.wait_stats(lambda s: s["dead_lettered"] == 1)
    publish("m2z/plant-b/k2/event", {"n": 2})          # the next event is not held up
    wait_requests(gateway, 1)
    (d,) = a.dead_letters()
    assert d["status"] == code and d["reason"] == words
