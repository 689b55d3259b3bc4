"""Lose nothing: the durable spool through gateway outages, kills, token
outages and expiry, backpressure, poison messages, a full spool and a torn
spool tail. Real broker, stand-in gateway (TLS, token checks), HTTPS token
endpoint, the real binary.

Every event carries {"seq": N} and is identified by it at the gateway. The
core assertion (exactly_once): each published seq was answered OK exactly
once; any other copy was answered ALREADY_EXISTS (Zeebe's de-duplication by
the derived messageId) or a fault we injected; per correlation key, the OK
arrivals are in publish order.

M2Z_FAULT_SCALE (default 1) scales the event counts of most tests, for
slower machines or emulators."""

import collections
import json
import os
import random
import signal
import threading
import time

import pytest

import util

SCALE = float(os.environ.get("M2Z_FAULT_SCALE", "1"))
ROUTE = {"ev": {"topic": "dev/+/ev", "message_name": "device-event",
                "correlation_key": "{/key}"}}


def n_(n):
    return max(20, int(n * SCALE))


def events(n, keys=8, start=0):
    return [("dev/d%d/ev" % ((i) % keys),
             {"seq": i, "key": "k%d" % (i % keys), "pad": "x" * 40})
            for i in range(start, start + n)]


def seq_of(rec):
    return json.loads(util.field(rec, "variables"))["seq"]


def statuses_by_seq(gw):
    by = collections.defaultdict(list)
    for r in gw.requests():
        by[seq_of(r)].append(util.field(r, "status"))
    return by


def ok_seqs(gw):
    return {s for s, sts in statuses_by_seq(gw).items() if "OK" in sts}


def wait_all_ok(gw, n, timeout=90):
    util.wait_until(lambda: len(ok_seqs(gw)) >= n, timeout,
                    what="%d events answered OK at the gateway" % n)


def exactly_once(gw, seqs, allowed=("ALREADY_EXISTS",)):
    by = statuses_by_seq(gw)
    assert set(by) == set(seqs), "unexpected or missing: %s" % sorted(set(by) ^ set(seqs))[:20]
    for s, sts in by.items():
        assert sts.count("OK") == 1, (s, sts)
        extra = [x for x in sts if x != "OK"]
        assert all(x in allowed for x in extra), (s, sts)


def order_kept(gw):
    per = collections.defaultdict(list)
    for r in gw.requests():
        if util.field(r, "status") == "OK":
            per[util.field(r, "correlationKey")].append(seq_of(r))
    for key, seqs in per.items():
        assert seqs == sorted(seqs), (key, seqs[:30])


def publish_in_background(publish, msgs):
    err = []

    def run():
        try:
            publish.many(msgs, timeout=180)
        except Exception as e:  # noqa: BLE001 - reported by join()
            err.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()

    def join(timeout=180):
        t.join(timeout)
        assert not t.is_alive(), "publisher still running"
        assert not err, err
    return join


# ---------------------------------------------------------------- outage

def test_gateway_outage_mid_stream(agent, gateway, publish):
    a = agent(routes=ROUTE)
    n = n_(1500)
    msgs = events(n)
    publish.many(msgs[: n // 3])
    gateway.set_unavailable(True)
    publish.many(msgs[n // 3: 2 * n // 3])
    a.wait_stats(lambda s: s["spooled"] == 2 * n // 3 and s["retries"] > 0)
    time.sleep(2)  # a real outage: several failed attempts and backoff
    gateway.set_unavailable(False)
    publish.many(msgs[2 * n // 3:])
    wait_all_ok(gateway, n)
    exactly_once(gateway, range(n), allowed=("ALREADY_EXISTS", "UNAVAILABLE"))
    order_kept(gateway)
    s = a.wait_stats(lambda s: s["backlog"] == 0)
    assert s["published"] + s["duplicates"] == n + s["duplicates"]
    assert s["published"] == n and s["dead_lettered"] == 0


# ---------------------------------------------------------------- kills

@pytest.mark.parametrize("when", ["after_spool", "before_spool"])
def test_kill_inside_on_message_is_redelivered(agent, gateway, publish, when):
    """SIGKILL while the agent handles message K (before it returns, so before
    the PUBACK): the broker redelivers K, and nothing is lost."""
    k = 40
    a = agent(routes=ROUTE, env={"M2Z_TEST_CRASH": "%s:%d" % (when, k)})
    first = events(k)                      # seq 0..k-1; seq k-1 is the K-th
    join = publish_in_background(publish, first)
    rc = a.wait_exit(timeout=30)
    assert rc == -signal.SIGKILL, rc
    a.env = {}
    a.start()
    join()
    rest = events(n_(200), start=k)
    publish.many(rest)
    total = k + len(rest)
    wait_all_ok(gateway, total)
    exactly_once(gateway, range(total))
    order_kept(gateway)
    s = a.wait_stats(lambda s: s["backlog"] == 0)
    # The restarted agent received the fresh events plus at least message K
    # again: the broker redelivered what the killed process never acked.
    assert s["received"] >= len(rest) + 1, s
    crashed = statuses_by_seq(gateway)[k - 1]
    if when == "after_spool":
        # K was in the spool (replayed) AND redelivered: two copies reach the
        # gateway, one OK, the other ALREADY_EXISTS.
        assert sorted(crashed) == ["ALREADY_EXISTS", "OK"], crashed
    else:
        assert crashed == ["OK"], crashed


def test_repeated_sigkill_mid_stream(agent, gateway, publish):
    n = n_(3000)
    a = agent(routes=ROUTE)
    msgs = events(n)
    join = publish_in_background(publish, msgs)
    rnd = random.Random(7)
    for _ in range(3):
        util.wait_until(lambda: a.running(), 10)
        time.sleep(rnd.uniform(0.2, 0.8))
        a.kill()
        a.start()
    join()
    wait_all_ok(gateway, n, timeout=120)
    exactly_once(gateway, range(n))
    order_kept(gateway)


def test_sigkill_during_10000_event_stream(agent, gateway, publish):
    n = 10000
    a = agent(routes=ROUTE)
    join = publish_in_background(publish, events(n))
    time.sleep(1.0)
    a.kill()
    a.start()
    join(timeout=300)
    wait_all_ok(gateway, n, timeout=300)
    exactly_once(gateway, range(n))


# ---------------------------------------------------------------- tokens

def test_token_endpoint_down_then_back(agent, gateway, token_server, publish):
    token_server.set_down(True)
    a = agent(routes=ROUTE)
    n = n_(300)
    publish.many(events(n))          # ingestion does not wait for a token
    s = a.wait_stats(lambda s: s["spooled"] == n)
    assert s["published"] == 0 and s["backlog"] == n
    assert gateway.requests() == []
    a.wait_stats(lambda s: s["token_failures"] >= 1)
    token_server.set_down(False)
    wait_all_ok(gateway, n, timeout=120)
    exactly_once(gateway, range(n))
    order_kept(gateway)


def test_tokens_that_expire_every_few_seconds(agent, gateway_factory, certs, publish):
    from peers.token_server import TokenServer
    ts = TokenServer(port=0, cert=certs.server_cert, key=certs.server_key,
                     client_id=util.CLIENT_ID, client_secret=util.CLIENT_SECRET,
                     audience=util.AUDIENCE, expires_in=3)
    ts.start()
    try:
        gw = gateway_factory(tls=True, token_check=ts.is_valid)
        # Tokens living 3 s (< refresh_ahead) are used until they expire;
        # allow a fetch per second so several tokens come and go here.
        a = agent(routes=ROUTE, gateway=gw, token_server=ts,
                  sections={"oauth": {"min_refresh_interval": "1s"}})
        n = n_(600)
        msgs = events(n)
        for i in range(0, n, n // 6):        # spread over ~7 s: several tokens
            publish.many(msgs[i:i + n // 6])
            time.sleep(1.2)
        wait_all_ok(gw, n, timeout=90)
        exactly_once(gw, range(n), allowed=("ALREADY_EXISTS", "UNAUTHENTICATED"))
        order_kept(gw)
        assert len(util.issued_tokens(ts)) >= 3
        a.wait_stats(lambda s: s["backlog"] == 0)
    finally:
        ts.stop()


# ---------------------------------------------------------------- backpressure

def test_every_fifth_call_resource_exhausted(agent, gateway, publish):
    gateway.fail_every(5, "RESOURCE_EXHAUSTED")
    a = agent(routes=ROUTE)
    n = n_(800)
    publish.many(events(n, keys=40))
    wait_all_ok(gateway, n)
    exactly_once(gateway, range(n), allowed=("ALREADY_EXISTS", "RESOURCE_EXHAUSTED"))
    order_kept(gateway)
    exhausted = sum(sts.count("RESOURCE_EXHAUSTED") for sts in statuses_by_seq(gateway).values())
    s = a.wait_stats(lambda s: s["backlog"] == 0)
    assert exhausted >= n // 5 - 1
    assert s["retries"] == exhausted and s["published"] == n


# ---------------------------------------------------------------- poison

def test_poison_messages_do_not_stop_the_stream(agent, gateway, publish):
    a = agent(routes=ROUTE, sections={"zeebe": {"max_message_size": "2KiB"}})
    good = events(n_(100))
    poison = [
        ("dev/p1/ev", b"not json at all", "RENDER"),
        ("dev/p2/ev", {"seq": -2, "nokey": True}, "RENDER"),
        ("dev/p3/ev", {"seq": -3, "key": "big", "blob": "y" * 4000}, "TOO_BIG"),
        ("dev/p4/ev", b"\xff\xfe{\"key\":1}", "RENDER"),
        ("dev/p5/ev", [1, 2, 3], "RENDER"),
    ]
    mixed = list(good)
    for i, (t, p, _) in enumerate(poison):
        mixed.insert(10 + 15 * i, (t, p))
    publish.many(mixed)
    wait_all_ok(gateway, len(good))
    # One more good event that the gateway rejects: a dead letter too.
    gateway.fail_next("INVALID_ARGUMENT", 1, "Property 'variables' is invalid: injected")
    publish.many(events(1, start=len(good)))
    util.wait_until(lambda: len(a.dead_letters()) == len(poison) + 1, 20, what="dead letters")
    publish.many(events(5, start=len(good) + 1))
    wait_all_ok(gateway, len(good) + 5)

    dls = a.dead_letters()
    by_topic = {d["topic"]: d for d in dls}
    for t, _, status in poison:
        assert by_topic[t]["status"] == status, by_topic[t]
        assert by_topic[t]["reason"], by_topic[t]
        assert by_topic[t]["route"] == "ev"
    assert "payload_base64" in by_topic["dev/p4/ev"]
    rejected = [d for d in dls if d["status"] == "INVALID_ARGUMENT"]
    assert len(rejected) == 1 and "injected" in rejected[0]["reason"]
    assert json.loads(rejected[0]["payload"])["seq"] == len(good)
    s = a.wait_stats(lambda s: s["backlog"] == 0)
    assert s["dead_lettered"] == len(poison) + 1
    assert s["published"] == len(good) + 5
    # Logged once each, with route, topic and reason.
    log = a.log()
    for t, _, _ in poison:
        assert log.count("dead letter: route=ev topic=%s " % t) == 1


# ---------------------------------------------------------------- spool full

FULL = {"spool": {"max_bytes": "64KiB", "segment_bytes": "16KiB"}}


def _fill(a, gateway, publish, n):
    gateway.set_unavailable(True)
    return publish_in_background(publish, events(n))


def test_spool_full_reject_newest(agent, gateway, publish):
    a = agent(routes=ROUTE, sections=dict(FULL, spool=dict(FULL["spool"], on_full="reject_newest")))
    n = 1500
    _fill(a, gateway, publish, n)()
    s = a.wait_stats(lambda s: s["received"] == n)
    assert s["rejected"] > 0 and s["spooled"] + s["rejected"] == n, s
    gateway.set_unavailable(False)
    s = a.wait_stats(lambda s: s["backlog"] == 0, timeout=60)
    assert s["published"] == s["spooled"], s
    assert len(ok_seqs(gateway)) == s["spooled"]


def test_spool_full_drop_oldest(agent, gateway, publish):
    a = agent(routes=ROUTE, sections=dict(FULL, spool=dict(FULL["spool"], on_full="drop_oldest")))
    n = 1500
    _fill(a, gateway, publish, n)()
    s = a.wait_stats(lambda s: s["received"] == n)
    assert s["dropped"] > 0 and s["spooled"] == n, s
    gateway.set_unavailable(False)
    s = a.wait_stats(lambda s: s["backlog"] == 0, timeout=60)
    assert s["published"] + s["dropped"] == n, s
    assert len(ok_seqs(gateway)) == s["published"]
    # What survives is the newest.
    assert max(ok_seqs(gateway)) == n - 1
    assert "dropped" in a.log()


def test_spool_full_block_holds_the_broker_ack(agent, gateway, publish):
    a = agent(routes=ROUTE, sections=FULL)           # on_full = block (default)
    n = 1500
    join = _fill(a, gateway, publish, n)
    s = a.wait_stats(lambda s: s["spooled"] > 0 and "spool full" in a.log(), timeout=30)
    time.sleep(1)
    s = a.stats()
    assert s["received"] < n and s["rejected"] == 0 and s["dropped"] == 0, s
    gateway.set_unavailable(False)
    join()
    wait_all_ok(gateway, n, timeout=120)
    exactly_once(gateway, range(n), allowed=("ALREADY_EXISTS", "UNAVAILABLE"))
    order_kept(gateway)


# ---------------------------------------------------------------- torn tail

def test_torn_spool_tail_is_cut_and_the_rest_delivered(agent, gateway, publish):
    gateway.set_unavailable(True)
    a = agent(routes=ROUTE)
    n = 200
    publish.many(events(n))
    a.wait_stats(lambda s: s["spooled"] == n)
    a.kill()
    segs = sorted(f for f in os.listdir(a.spool_dir) if f.endswith(".seg"))
    last = os.path.join(a.spool_dir, segs[-1])
    with open(last, "ab") as f:
        f.write(b"\x40\x00\x00\x00garbage-after-a-crash")    # a torn frame
    gateway.set_unavailable(False)
    a.start()
    wait_all_ok(gateway, n)
    exactly_once(gateway, range(n), allowed=("ALREADY_EXISTS", "UNAVAILABLE"))
    assert "cut" in a.log()


# ---------------------------------------------------------------- shutdown

def test_sigterm_with_backlog_then_resume(agent, gateway, publish):
    gateway.delay_ms = 300
    a = agent(routes=ROUTE, sections={"forward": {"shutdown_timeout": "2s"}})
    n = n_(400)
    publish.many(events(n, keys=n))
    a.wait_stats(lambda s: s["published"] >= 10)
    t0 = time.monotonic()
    assert a.stop(signal.SIGTERM, timeout=15) == 0
    assert time.monotonic() - t0 < 2 + 5
    gateway.delay_ms = 0
    a.start()
    wait_all_ok(gateway, n)
    exactly_once(gateway, range(n), allowed=("ALREADY_EXISTS", "CANCELLED"))


@pytest.mark.skipif(os.environ.get("M2Z_SLOW_TESTS") != "1", reason="M2Z_SLOW_TESTS=1 (a 30 s outage)")
def test_drain_after_30s_outage(agent, gateway, publish):
    """A measurement more than a test: events produced at RATE/s during a
    30 s outage, then the gateway comes back; prints how much faster the
    backlog drained than it was produced (the issue asks for >= 5x)."""
    rate, outage = 200, 30.0
    a = agent(routes=ROUTE, log_level="info")
    gateway.set_unavailable(True)
    msgs = events(int(rate * outage), keys=50)
    t0 = time.monotonic()
    for i in range(0, len(msgs), rate // 10):
        publish.many(msgs[i:i + rate // 10])
        time.sleep(max(0.0, t0 + (i + rate // 10) / rate - time.monotonic()))
    produced_s = time.monotonic() - t0
    a.wait_stats(lambda s: s["spooled"] == len(msgs))
    gateway.set_unavailable(False)
    t1 = time.monotonic()
    wait_all_ok(gateway, len(msgs), timeout=120)
    oks = sorted(r["mono"] for r in gateway.requests(status="OK"))
    detect_s = oks[0] - t1            # until the agent's backoff tried again
    drain_s = oks[-1] - oks[0]        # first to last delivery
    ratio = (len(msgs) / drain_s) / (len(msgs) / produced_s)
    print("\noutage drain: %d events produced in %.1f s (%.0f/s); first delivery %.2f s after "
          "the gateway returned; drained in %.2f s (%.0f/s): %.1fx the production rate"
          % (len(msgs), produced_s, len(msgs) / produced_s, detect_s, drain_s,
             len(msgs) / drain_s, ratio))
    exactly_once(gateway, range(len(msgs)), allowed=("ALREADY_EXISTS", "UNAVAILABLE"))
    assert ratio >= 5


# ---------------------------------------------------------------- broker restart

def test_broker_restart_reconnects_and_resubscribes(agent, broker, gateway, publish):
    a = agent(routes=ROUTE, sections={"mqtt": {"reconnect_min": "200ms", "reconnect_max": "1s"}})
    publish.many(events(100))
    wait_all_ok(gateway, 100)
    broker.restart()                       # same port, same persistence
    publish.reconnect()
    util.wait_until(lambda: a.log().count("subscribed to") >= 2, 20, what="resubscribe")
    publish.many(events(100, start=100))
    wait_all_ok(gateway, 200)
    exactly_once(gateway, range(200))
    assert "connection to 127.0.0.1:%d lost" % broker.port in a.log()
