"""Start order and outages: the broker, the token endpoint and the gateway
may each be absent when the agent starts, or vanish and come back, in any
order; the agent gets back to each of them without a restart and loses
nothing.

A late peer is started on a port chosen before the agent starts, so the
agent's configuration points at it from the beginning. Each test keeps the
peer absent for a few seconds only (ABSENT_S), enough for the agent to have
failed and retried at least once."""

import json
import os
import time

import pytest

import util
from util import AUDIENCE, CLIENT_ID, CLIENT_SECRET

ABSENT_S = float(os.environ.get("M2Z_ABSENT_S", "6"))
ROUTE = {"ev": {"topic": "dev/+/ev", "message_name": "device-event",
                "correlation_key": "{/key}"}}
FAST_MQTT = {"mqtt": {"reconnect_min": "200ms", "reconnect_max": "1s"}}


def events(n, start=0, keys=4):
    return [("dev/d%d/ev" % (i % keys), {"seq": i, "key": "k%d" % (i % keys)})
            for i in range(start, start + n)]


def ok_seqs(gw):
    return {json.loads(util.field(r, "variables"))["seq"] for r in gw.requests(status="OK")}


def wait_all_ok(gw, n, timeout=60):
    util.wait_until(lambda: ok_seqs(gw) >= set(range(n)), timeout,
                    what="%d events answered OK at the gateway" % n)


def ok_exactly_once(gw, n):
    seqs = [json.loads(util.field(r, "variables"))["seq"] for r in gw.requests(status="OK")]
    dup = sorted({s for s in seqs if seqs.count(s) > 1})
    assert not dup, "answered OK more than once: %s" % dup[:20]
    assert set(seqs) == set(range(n))


def wait_log_count(a, text, n, timeout=30):
    util.wait_until(lambda: a.log().count(text) >= n, timeout,
                    what="%d x %r in the agent log" % (n, text))


# ---------------------------------------------------------------- broker

def test_broker_absent_at_start(agent, tmp_path, gateway, publish):
    """The boot race: the agent starts first, the broker ABSENT_S later.
    (libmosquitto's threaded loop never retried a failed first connect.)"""
    b = util.Broker(str(tmp_path / "late-broker"))
    b.port = util.free_port()
    a = agent(routes=ROUTE, broker=b, sections=FAST_MQTT, wait_ready=False)
    try:
        util.wait_until(lambda: "cannot connect to 127.0.0.1:%d" % b.port in a.log(), 10,
                        what="the first failed connect")
        time.sleep(ABSENT_S)
        assert a.running()
        assert "subscribed to" not in a.log()
        b.start()
        a.wait_ready(timeout=20)
        pub = util.Publisher(b.port)
        try:
            pub.many(events(50))
        finally:
            pub.close()
        wait_all_ok(gateway, 50)
        ok_exactly_once(gateway, 50)
    finally:
        b.stop()


def test_broker_restarted_twice_mid_stream(agent, broker, gateway, publish):
    a = agent(routes=ROUTE, sections=FAST_MQTT)
    n = 0
    for round_ in range(3):
        publish.many(events(100, start=n))
        n += 100
        if round_ < 2:
            broker.restart()
            publish.reconnect()
            wait_log_count(a, "subscribed to", round_ + 2)
    wait_all_ok(gateway, n)
    ok_exactly_once(gateway, n)


def test_broker_restarted_under_a_persistent_session_backlog(agent, broker, gateway, publish):
    """Events published while the agent is cut off from the broker are kept
    by the broker for our persistent session and arrive after the reconnect."""
    a = agent(routes=ROUTE, sections=FAST_MQTT)
    publish.many(events(50))
    wait_all_ok(gateway, 50)
    broker.stop()
    util.wait_until(lambda: not a.running() or "connection to 127.0.0.1" in a.log(), 10,
                    what="the agent notices the broker is gone")
    broker.start()
    publish.reconnect()
    # Published before the agent is back: queued by the broker.
    publish.many(events(50, start=50))
    wait_log_count(a, "subscribed to", 2)
    wait_all_ok(gateway, 100)
    ok_exactly_once(gateway, 100)


# ---------------------------------------------------------------- gateway

@pytest.fixture
def late_gateway(certs, token_server):
    """A stand-in gateway on a port chosen now, started later (start())."""
    from peers.gateway import StandInGateway
    made = []

    class Late:
        port = util.free_port()

        def start(self):
            gw = StandInGateway(port=self.port, tls=(certs.server_cert, certs.server_key),
                                token_check=token_server.is_valid).start()
            made.append(gw)
            return gw
    yield Late()
    for gw in made:
        gw.stop()


def test_gateway_absent_at_start(agent, late_gateway, publish):
    a = agent(routes=ROUTE, gateway=late_gateway)
    publish.many(events(50))
    a.wait_stats(lambda s: s["spooled"] == 50)
    util.wait_until(lambda: "cannot reach localhost:%d" % late_gateway.port in a.log(), 15,
                    what="the first failed call")
    time.sleep(ABSENT_S)
    gw = late_gateway.start()
    wait_all_ok(gw, 50)
    publish.many(events(50, start=50))
    wait_all_ok(gw, 100)
    ok_exactly_once(gw, 100)


def test_gateway_vanishes_and_returns(agent, late_gateway, publish):
    gw = late_gateway.start()
    agent(routes=ROUTE, gateway=late_gateway)
    publish.many(events(50))
    wait_all_ok(gw, 50)
    gw.stop()
    publish.many(events(50, start=50))
    time.sleep(ABSENT_S / 2)
    gw2 = late_gateway.start()
    util.wait_until(lambda: ok_seqs(gw2) >= set(range(50, 100)), 60,
                    what="events 50..99 at the returned gateway")
    assert not ok_seqs(gw2) & set(range(50)), "delivered before the outage, sent again"


# ---------------------------------------------------------------- token endpoint

def test_token_endpoint_absent_at_start(agent, gateway_factory, certs, publish):
    from peers.token_server import TokenServer
    port = util.free_port()
    ts = TokenServer(port=port, cert=certs.server_cert, key=certs.server_key,
                     client_id=CLIENT_ID, client_secret=CLIENT_SECRET, audience=AUDIENCE)
    gw = gateway_factory(tls=True, token_check=ts.is_valid)
    a = agent(routes=ROUTE, gateway=gw, token_server=ts)
    try:
        publish.many(events(50))
        a.wait_stats(lambda s: s["spooled"] == 50)
        util.wait_until(lambda: "cannot reach localhost:%d" % port in a.log(), 10,
                        what="a failed token fetch")
        time.sleep(ABSENT_S)
        assert gw.requests() == []
        ts.start()
        wait_all_ok(gw, 50, timeout=90)
        publish.many(events(50, start=50))
        wait_all_ok(gw, 100)
        ok_exactly_once(gw, 100)
    finally:
        ts.stop()
