"""End to end: MQTT broker -> mqtt2zeebe -> stand-in Zeebe gateway, with
TLS on the gateway and the token endpoint and OAuth on (unless a test says
otherwise)."""

import base64
import datetime
import json
import re
import signal
import time

import grpc

import util
from util import AUDIENCE, CLIENT_ID, CLIENT_SECRET, MQTT_PASSWORD
from util import field, gw_attempts, gw_requests, meta, variables, wait_until


def by_key(reqs, key):
    return [r for r in reqs if field(r, "correlationKey") == key]


def wait_requests(gw, n, timeout=20.0, what=None):
    return wait_until(lambda: (lambda rs: rs if len(rs) >= n else None)(gw_requests(gw)),
                      timeout, what=what or "%d request(s) at the gateway" % n)


# ---------------------------------------------------------------- 1

def test_event_arrives_with_configured_fields(agent, gateway_factory, token_server, publish):
    gateway = gateway_factory(tls=True, token_check=token_server.is_valid, multi_tenancy=True)
    a = agent(gateway=gateway, routes={
        "pump": {
            "topic": "plant/+/pump/+/telemetry",
            "message_name": "pump-telemetry",
            "correlation_key": "pump-{4}-{/serial}",
            "message_id": "{/seq}-{4}",
            "ttl": "90s",
            "tenant_id": "{2}",
            "var.site": "{2}",
        },
    })
    payload = {"serial": "A7", "temp": 21.5, "seq": 41, "ok": True, "tags": ["x", "y"]}
    publish("plant/north/pump/7/telemetry", payload)
    (r,) = wait_requests(gateway, 1)
    assert field(r, "name") == "pump-telemetry"
    assert field(r, "correlationKey") == "pump-7-A7"
    assert field(r, "messageId") == "41-7"
    assert field(r, "timeToLive") == 90000
    assert field(r, "tenantId") == "north"
    assert variables(r) == dict(payload, site="north")

    auth = meta(r, "authorization")
    assert auth and auth.startswith("Bearer "), auth
    tok = auth[len("Bearer "):]
    assert token_server.is_valid(tok)
    assert tok in util.issued_tokens(token_server)
    ua = meta(r, "user-agent")
    assert ua and ua.startswith("mqtt2zeebe/"), ua

    treqs = util.token_requests(token_server)
    assert len(treqs) >= 1
    form = util.token_form(treqs[0])
    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == CLIENT_ID
    assert form["client_secret"] == CLIENT_SECRET
    assert form["audience"] == AUDIENCE
    assert "scope" not in form

    s = a.wait_stats(lambda s: s["published"] == 1)
    assert s["received"] == 1 and s["spooled"] == 1 and s["dead_lettered"] == 0
    assert s["backlog"] == 0


# ---------------------------------------------------------------- 2

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def test_templates_variables_and_route_order(agent, gateway, publish):
    a = agent(routes={
        "first": {"topic": "t/overlap/#", "message_name": "first", "correlation_key": "first-{3}"},
        "second": {"topic": "t/overlap/+", "message_name": "second", "correlation_key": "second-{3}"},
        "levels": {"topic": "t/lvl/+/+", "message_name": "lvl-{3}", "correlation_key": "{4}-{3}",
                   "message_id": "none"},
        "ptr": {"topic": "t/ptr/+", "message_name": "ptr", "correlation_key": "{/a/b|nokey}",
                "message_id": "ptr-{3}"},
        "combo": {"topic": "t/combo/+", "message_name": "combo", "correlation_key": "pump-{3}-{/serial}"},
        "wrap": {"topic": "t/wrap/+", "message_name": "wrap", "correlation_key": "{3}",
                 "wrap_key": "reading", "topic_variable": "mqttTopic",
                 "time_variable": "receivedAt", "var.device": "dev-{3}"},
    })
    sent = [
        ("t/overlap/x", {"n": 1}),
        ("t/lvl/a/b", {"k": 1}),
        ("t/ptr/1", {"a": {"b": "deep"}}),
        ("t/ptr/2", {"a": {}}),
        ("t/ptr/3", {"a": {"b": 5}}),
        ("t/combo/7", {"serial": "S-9"}),
        ("t/wrap/w1", b"42"),
        ("t/wrap/w2", b"[1, 2]"),
        ("t/wrap/w3", b"hello there"),
        ("t/wrap/w4", b"\xff\xfe\x00a"),
        ("t/wrap/w5", {"device": "from-payload", "mqttTopic": "x", "v": 1}),
    ]
    t0 = datetime.datetime.now(datetime.timezone.utc)
    for topic, payload in sent:
        publish(topic, payload)
    wait_requests(gateway, len(sent))
    s = a.wait_stats(lambda s: s["published"] == len(sent) and s["backlog"] == 0)
    reqs = gw_requests(gateway)
    assert len(reqs) == len(sent)
    assert s["received"] == len(sent) and s["unrouted"] == 0 and s["dead_lettered"] == 0

    def one(key):
        rs = by_key(reqs, key)
        assert len(rs) == 1, (key, [field(r, "correlationKey") for r in reqs])
        return rs[0]

    # First matching route wins.
    r = one("first-x")
    assert field(r, "name") == "first"
    assert not [r for r in reqs if field(r, "name") == "second"]
    # Topic levels, message_id = none.
    r = one("b-a")
    assert field(r, "name") == "lvl-a"
    assert field(r, "messageId") == ""
    # JSON pointer, default, number as text.
    assert field(one("deep"), "messageId") == "ptr-1"
    assert field(one("nokey"), "messageId") == "ptr-2"
    assert field(one("5"), "messageId") == "ptr-3"
    # Combination.
    assert field(one("pump-7-S-9"), "name") == "combo"
    # Auto message ids: m2z- + 32 hex, all distinct.
    auto = [field(r, "messageId") for r in reqs if field(r, "name") in ("first", "combo", "wrap")]
    assert all(re.fullmatch(r"m2z-[0-9a-f]{32}", i) for i in auto), auto
    assert len(set(auto)) == len(auto)

    # Variables: wrapping of non-objects, text, invalid UTF-8, extras.
    def wv(dev):
        v = variables(one(dev))
        ts = v.pop("receivedAt")
        assert RFC3339.match(ts), ts
        when = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        assert abs((when - t0).total_seconds()) < 60, (ts, t0)
        assert v.pop("mqttTopic") == "t/wrap/" + dev
        assert v.pop("device") == "dev-" + dev
        return v
    assert wv("w1") == {"reading": 42}
    assert wv("w2") == {"reading": [1, 2]}
    assert wv("w3") == {"reading": "hello there"}
    assert wv("w4") == {"reading": base64.b64encode(b"\xff\xfe\x00a").decode(),
                        "readingEncoding": "base64"}
    # Extras override payload keys of the same name.
    assert wv("w5") == {"v": 1}
    assert variables(one("b-a")) == {"k": 1}


def test_unrouted_messages_counted_and_ignored(agent, gateway, publish):
    """The broker keeps a persistent session's subscriptions: after a route
    is removed from the config, its filter still delivers to us. Those
    messages match no route: counted, not forwarded, not dead letters."""
    keep = {"topic": "keep/+", "message_name": "keep", "correlation_key": "{2}"}
    a = agent(routes={"keep": keep,
                      "gone": {"topic": "gone/+", "message_name": "gone", "correlation_key": "{2}"}})
    assert a.stop() == 0
    a.reconfigure(routes={"keep": keep})
    a.start()
    publish("gone/1", {"n": 1})
    publish("keep/1", {"n": 2})
    publish("gone/2", "text")
    publish("keep/2", {"n": 3})
    wait_requests(gateway, 2)
    s = a.wait_stats(lambda s: s["received"] == 4 and s["backlog"] == 0 and s["published"] == 2)
    assert s["unrouted"] == 2 and s["spooled"] == 2 and s["dead_lettered"] == 0
    assert sorted(field(r, "correlationKey") for r in gw_requests(gateway)) == ["1", "2"]
    assert {field(r, "name") for r in gw_requests(gateway)} == {"keep"}
    assert a.dead_letters() == []


# ---------------------------------------------------------------- 3

def test_many_calls_in_flight(agent, gateway_factory, token_server, publish):
    gw = gateway_factory(tls=True, token_check=token_server.is_valid, delay_ms=200)
    a = agent(gateway=gw, routes={
        "load": {"topic": "load/+", "message_name": "load", "correlation_key": "{/i}",
                 "message_id": "load-{/i}"},
    })
    n = 500
    publish.many([("load/%d" % (i % 10), {"i": i}) for i in range(n)])
    wait_until(lambda: len({field(r, "messageId") for r in gw_requests(gw)}) >= n, 90,
               what="%d distinct messages at the gateway" % n)
    ids = {field(r, "messageId") for r in gw_requests(gw)}
    assert ids == {"load-%d" % i for i in range(n)}
    assert gw.max_concurrent >= 32, gw.max_concurrent
    s = a.wait_stats(lambda s: s["published"] + s["duplicates"] == n and s["backlog"] == 0)
    assert s["dead_lettered"] == 0


# ---------------------------------------------------------------- 4

# An agent WARN/ERROR line (not gRPC's own stderr) naming the failed check.
TLS_ERROR = r"(?im)^\S+ (WARN|ERROR) +\[\w+\] .*certificate verif\w* failed"


def test_gateway_certificate_not_trusted(agent, gateway, certs, publish):
    a = agent(zeebe_ca=certs.other_ca, sections={"forward": {"retry_initial": "50ms",
                                                             "retry_max": "200ms"}})
    for i in range(3):
        publish("m2z/site/dev%d/event" % i, {"i": i})
    a.wait_stats(lambda s: s["spooled"] == 3 and s["retries"] >= 2, timeout=30)
    assert gw_attempts(gateway) == []
    s = a.stats()
    assert s["published"] == 0 and s["backlog"] == 3 and s["dead_lettered"] == 0
    a.wait_log(TLS_ERROR)
    # Fix the CA, restart with the same spool: everything arrives.
    assert a.stop() == 0
    with open(a.conf_path) as f:
        text = f.read()
    zeebe_part, rest = text.split("[mqtt]", 1)
    with open(a.conf_path, "w") as f:
        f.write(zeebe_part.replace(certs.other_ca, certs.ca, 1) + "[mqtt]" + rest)
    a.start()
    wait_requests(gateway, 3)
    assert sorted(field(r, "correlationKey") for r in gw_requests(gateway)) == ["dev0", "dev1", "dev2"]


def test_token_endpoint_certificate_not_trusted(agent, gateway, token_server, certs, publish):
    a = agent(sections={"oauth": {"ca_certificate": certs.other_ca}})
    for i in range(2):
        publish("m2z/site/dev%d/event" % i, {"i": i})
    a.wait_stats(lambda s: s["spooled"] == 2 and s["token_failures"] >= 1, timeout=30)
    a.wait_log(TLS_ERROR)
    assert util.token_fetches(token_server) == 0
    assert util.issued_tokens(token_server) == []
    assert gw_attempts(gateway) == []
    s = a.stats()
    assert s["published"] == 0 and s["backlog"] == 2 and s["dead_lettered"] == 0


# ---------------------------------------------------------------- 5

def _env_for(gateway, token_server, certs):
    return {
        "ZEEBE_ADDRESS": "localhost:%d" % gateway.port,
        "ZEEBE_CLIENT_ID": CLIENT_ID,
        "ZEEBE_CLIENT_SECRET": CLIENT_SECRET,
        "ZEEBE_AUTHORIZATION_SERVER_URL": token_server.url,
        "ZEEBE_TOKEN_AUDIENCE": AUDIENCE,
        "ZEEBE_CA_CERTIFICATE_PATH": certs.ca,
    }


def _check_delivered_with_token(gateway, token_server, key):
    (r,) = wait_requests(gateway, 1)
    assert field(r, "correlationKey") == key
    tok = meta(r, "authorization")[len("Bearer "):]
    assert token_server.is_valid(tok)
    form = util.token_form(util.token_requests(token_server)[0])
    assert (form["client_id"], form["client_secret"], form["audience"]) == (
        CLIENT_ID, CLIENT_SECRET, AUDIENCE)


def test_environment_only_credentials(agent, gateway, token_server, certs, publish):
    """A config with only [mqtt], [spool], [log] and routes; the console's
    credentials file sourced into the environment does the rest."""
    a = agent(gateway=None, oauth=False, env=_env_for(gateway, token_server, certs))
    assert a.running()
    assert "[zeebe]" not in a.config_text and "[oauth]" not in a.config_text
    publish("m2z/site/env1/event", {"x": 1})
    _check_delivered_with_token(gateway, token_server, "env1")


def test_environment_wins_over_file(agent, gateway, token_server, certs, publish):
    agent(sections={
        "zeebe": {"address": "localhost:1", "ca_certificate": certs.other_ca},
        "oauth": {"url": "https://localhost:1/oauth/token", "client_id": "wrong",
                  "client_secret": "wrong", "audience": "wrong", "ca_certificate": None},
    }, env=_env_for(gateway, token_server, certs))
    publish("m2z/site/env2/event", {"x": 2})
    _check_delivered_with_token(gateway, token_server, "env2")


# ---------------------------------------------------------------- 6

def test_plaintext_gateway_with_token(agent, gateway_factory, token_server, publish):
    gw = gateway_factory(tls=False, token_check=token_server.is_valid)
    agent(gateway=gw, zeebe_ca=None, env={"ZEEBE_INSECURE_CONNECTION": "true"})
    publish("m2z/site/plain1/event", {"x": 1})
    (r,) = wait_requests(gw, 1)
    assert field(r, "correlationKey") == "plain1"
    auth = meta(r, "authorization")
    assert auth and token_server.is_valid(auth[len("Bearer "):])


def test_insecure_needs_exactly_true(agent, gateway_factory, token_server, publish):
    gw = gateway_factory(tls=False, token_check=token_server.is_valid)
    a = agent(gateway=gw, env={"ZEEBE_INSECURE_CONNECTION": "yes"},
              sections={"forward": {"retry_initial": "50ms", "retry_max": "200ms"}})
    publish("m2z/site/plain2/event", {"x": 1})
    a.wait_stats(lambda s: s["retries"] >= 2, timeout=30)
    assert gw_attempts(gw) == []


# ---------------------------------------------------------------- 7

def test_bad_device_messages_are_dead_lettered(agent, gateway, publish):
    a = agent(routes={
        "dev": {"topic": "dev/+/evt", "message_name": "dev-evt", "correlation_key": "{/serial}",
                "message_id": "seq-{/seq}"},
    }, sections={"zeebe": {"max_message_size": "2KiB"}})

    def good(n):
        publish("dev/d%d/evt" % n, {"serial": "S%d" % n, "seq": n})

    def arrived(*ns):
        want = {"seq-%d" % n for n in ns}
        wait_until(lambda: want <= {field(r, "messageId") for r in gw_requests(gateway)}, 20,
                   what="messages %s at the gateway" % sorted(want))

    good(1)
    publish("dev/d2/evt", {"seq": 2, "temp": 3})                      # no /serial
    good(3)
    publish("dev/d4/evt", {"serial": "S4", "seq": 4, "pad": "x" * 3000})  # too big
    good(5)
    arrived(1, 3, 5)
    gateway.fail_next(grpc.StatusCode.INVALID_ARGUMENT, 1)
    publish("dev/d6/evt", {"serial": "S6", "seq": 6})                 # gateway says no
    a.wait_stats(lambda s: s["dead_lettered"] == 3)
    good(7)
    arrived(1, 3, 5, 7)
    s = a.wait_stats(lambda s: s["published"] == 4 and s["backlog"] == 0)
    assert s["dead_lettered"] == 3 and s["received"] == 7

    dls = a.dead_letters()
    assert [d["topic"] for d in dls] == ["dev/d2/evt", "dev/d4/evt", "dev/d6/evt"], dls
    for d in dls:
        assert d["route"] == "dev"
        assert d["reason"]
        assert d["time"]
    d2, d4, d6 = dls
    assert "/serial" in d2["reason"] and "correlation_key" in d2["reason"]
    assert json.loads(d2["payload"]) == {"seq": 2, "temp": 3}
    assert d4["status"] == "TOO_BIG"
    assert d6["status"] == "INVALID_ARGUMENT"
    assert d6["message_id"] == "seq-6" and d6["correlation_key"] == "S6"
    assert json.loads(d6["payload"]) == {"serial": "S6", "seq": 6}

    # Logged once each, at warn/error, naming route, topic and reason.
    lines = [l for l in a.log().splitlines() if re.search(r"\b(WARN|ERROR)\b", l)]
    for d in dls:
        mine = [l for l in lines if d["topic"] in l]
        assert len(mine) == 1, (d["topic"], mine)
        assert "dev" in mine[0]
    assert "/serial" in [l for l in lines if "dev/d2/evt" in l][0]


# ---------------------------------------------------------------- 8

def test_sigterm_exit_and_no_secret_in_log(agent, gateway_factory, token_server, publish):
    gw = gateway_factory(tls=True, token_check=token_server.is_valid, delay_ms=300)
    a = agent(gateway=gw, log_level="debug",
              sections={"mqtt": {"username": "device-user", "password": MQTT_PASSWORD},
                        "forward": {"shutdown_timeout": "3s"}})
    for i in range(20):
        publish("m2z/site/t%d/event" % i, {"i": i})
    wait_requests(gw, 1)
    a.stats()  # the stats path must not leak either
    t0 = time.monotonic()
    rc = a.stop(signal.SIGTERM, timeout=10)
    elapsed = time.monotonic() - t0
    assert rc == 0, a.tail()
    assert elapsed < 3 + 2, "exit took %.1fs (shutdown_timeout 3s)" % elapsed

    log = a.log_bytes()
    secrets = [CLIENT_SECRET, MQTT_PASSWORD] + list(util.issued_tokens(token_server))
    assert len(secrets) >= 3
    for s in secrets:
        assert s.encode() not in log, "secret/token found in the agent log"
    # The token was really used (so the check above is not vacuous).
    assert any(token_server.is_valid(meta(r, "authorization")[7:]) for r in gw_requests(gw))
