"""Attacks on our own MQTT client (src/mqtt_in.c, src/mqtt_wire.c) before it
lands (issue 12): a hostile raw broker (test_mqtt_client.RawBroker) sending
bytes no real broker would, and a real mosquitto killed under load.

Each hostile case: the first connection delivers one event the agent must
acknowledge (so spooled), then misbehaves; whatever the agent does about
it, a later event must arrive, the agent must stay up, and under SANITIZE=1
the teardown fails on any ASan/UBSan report."""

import signal
import struct
import threading
import time

import pytest

import util
from test_mqtt_client import (FAST, ROUTE, connack, deliver, ev, mstr, packet,
                              publish_pkt, raw_agent, raw_broker, seqs_ok,
                              wait_seqs)

assert raw_broker  # a fixture, used by name

BIG = 5 * 1024 * 1024


def _huge_then_close(c):
    # 256 MiB declared, 1 KiB sent, connection closed
    c.send(b"\x30\xff\xff\xff\x7f" + b"\x00" * 1024)
    return "close"


HOSTILE = {
    # a fifth remaining-length byte (2.2.3)
    "length_5_bytes": lambda c: c.send(b"\x30\xff\xff\xff\xff\x01" + b"\x00" * 8),
    "huge_length_then_close": _huge_then_close,
    # topic length 200 in a 12-byte frame
    "topic_past_frame": lambda c: c.send(packet(0x32, struct.pack(">H", 200) + b"dev/a/ev\x00\x01")),
    "topic_with_nul": lambda c: c.send(publish_pkt("dev/a\x00/ev", ev(90), pid=90)),
    "topic_with_wildcard": lambda c: c.send(publish_pkt("dev/+/ev", ev(91), pid=91)),
    "connack_twice": lambda c: c.send(connack()),
    "connect_from_broker": lambda c: c.send(packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")),
    "reserved_type_15": lambda c: c.send(b"\xf0\x00"),
    # QoS 3 (3.3.1.2); moved here from test_mqtt_client.py
    "qos_3": lambda c: c.send(packet(0x36, mstr("dev/a/ev") + b"\x00\x02{}")),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_frame_drops_the_connection_then_events_flow(agent, gateway, raw_broker, case):
    def script(c):
        c.handshake()
        if c.n == 1:
            deliver(c, 1, 1)
            if HOSTILE[case](c) == "close":
                return
        else:
            deliver(c, 2, 2)
        c.idle()

    rb = raw_broker(script)
    a = raw_agent(agent, rb)
    wait_seqs(gateway, [1, 2])
    assert rb.connections >= 2
    assert "lost (" in a.log()
    if case == "qos_3":
        assert "malformed packet from the broker" in a.log()
    assert a.running()
    assert not rb.errors, rb.errors
    # the hostile PUBLISHes (90, 91) were never handed to ingest
    assert set(seqs_ok(gateway)) == {1, 2}


def test_odd_but_legal_traffic_keeps_the_connection(agent, gateway, raw_broker):
    """PUBREL for ids we never saw (answered PUBCOMP), a PINGRESP storm, a
    PUBLISH trickled one byte per write, 1,000 PUBLISHes in one write and a
    5 MB PUBLISH: one connection throughout, every event acked and kept."""
    n_tiny = 1000

    def script(c):
        c.handshake()
        for pid in (999, 65535):
            c.send(packet(0x62, struct.pack(">H", pid)))
            c.expect_ack(7, pid)
        c.send(b"\xd0\x00" * 20000)
        deliver(c, 1, 1)
        for b in publish_pkt("dev/a/ev", ev(2), pid=2):
            c.send(bytes([b]))
            time.sleep(0.001)
        c.expect_ack(4, 2)
        c.send(b"".join(publish_pkt("dev/d%d/ev" % (i % 4), ev(i, "k%d" % (i % 4)), pid=i)
                        for i in range(3, 3 + n_tiny)))
        for i in range(3, 3 + n_tiny):
            c.expect_ack(4, i)
        # 5 MB: over zeebe.max_message_size, so a dead letter, and acked
        c.send(publish_pkt("dev/a/ev", {"seq": 5000, "key": "k", "pad": "x" * BIG}, pid=5000))
        c.expect_ack(4, 5000)
        deliver(c, 5001, 5001)
        c.idle()

    rb = raw_broker(script)
    a = raw_agent(agent, rb)
    want = [1, 2] + list(range(3, 3 + n_tiny)) + [5001]
    wait_seqs(gateway, want, timeout=120)
    assert rb.connections == 1, a.log()[-3000:]
    assert not rb.errors, rb.errors
    assert "TOO_BIG" in a.log() or "too big" in a.log().lower()
    assert a.running()


def test_every_connack_refusal_is_retried(agent, gateway, raw_broker):
    def script(c):
        c.expect(1)
        if c.n <= 5:
            c.send(connack(rc=c.n))
            c.idle()
            return
        c.send(connack())
        body = c.expect(8)
        c.send(packet(0x90, body[:2] + b"\x01"))
        deliver(c, 1, 1)
        c.idle()

    rb = raw_broker(script)
    a = raw_agent(agent, rb, wait_ready=False)
    wait_seqs(gateway, [1], timeout=60)
    for text in ("unacceptable protocol version", "identifier rejected", "server unavailable",
                 "bad user name or password", "not authorized"):
        assert text in a.log(), text
    assert rb.connections == 6
    assert not rb.errors, rb.errors


def test_silent_broker_is_left_after_half_a_keepalive(agent, gateway, raw_broker):
    """A broker that stops answering (a cable pulled: no FIN, no RST) is
    noticed by the unanswered PINGREQ, and the agent reconnects."""
    def script(c):
        c.handshake()
        if c.n == 1:
            deliver(c, 1, 1)
            while c.sock.recv(65536):   # swallow PINGREQs, never answer
                pass
            return
        deliver(c, 2, 2)
        c.idle()

    rb = raw_broker(script)
    a = raw_agent(agent, rb)
    wait_seqs(gateway, [1, 2], timeout=30)
    assert "keepalive: no answer" in a.log()
    assert not rb.errors, rb.errors


# ---------------------------------------------------------------- real broker

def test_broker_sigkilled_mid_burst_then_back(agent, broker, gateway, publish):
    """mosquitto killed -9 while a burst flows through it and started again
    on the same port: the agent reconnects and everything published after
    the restart arrives (what the killed broker held unsaved is its loss)."""
    a = agent(routes=ROUTE, sections={"mqtt": FAST})
    stop = threading.Event()

    def burst():
        i = 0
        while not stop.is_set() and i < 5000:
            try:
                publish("dev/a/ev", ev(i), qos=1)
            except Exception:  # noqa: BLE001 - the broker is being killed
                time.sleep(0.05)
            i += 1
    t = threading.Thread(target=burst)
    t.start()
    util.wait_until(lambda: len(gateway.requests(status="OK")) >= 30, 30, what="the burst under way")
    broker.kill()
    stop.set()
    t.join(30)
    broker.start()
    util.wait_until(lambda: a.log().count("subscribed to") >= 2, 30, what="a resubscription")
    publish.reconnect()
    publish.many([("dev/a/ev", ev(100000 + i)) for i in range(50)])
    wait_seqs(gateway, range(100000, 100050))
    assert a.running()


def test_sigterm_while_the_broker_is_unreachable(agent, broker, gateway, publish):
    a = agent(routes=ROUTE, sections={"mqtt": FAST, "forward": {"shutdown_timeout": "2s"}})
    publish("dev/a/ev", ev(1))
    wait_seqs(gateway, [1])
    broker.kill()
    util.wait_until(lambda: "lost (" in a.log(), 20, what="the agent noticing")
    t0 = time.monotonic()
    a.stop(signal.SIGTERM, timeout=15)
    assert time.monotonic() - t0 < 8, "stop took %.1fs" % (time.monotonic() - t0)
    broker.start()
    a.start()
    publish.reconnect()
    publish("dev/a/ev", ev(2))
    wait_seqs(gateway, [1, 2])


def test_worker_commands_while_the_broker_flaps(agent, broker, gateway):
    """Publish-mode jobs (QoS 1 commands, complete on PUBACK) created while
    mosquitto is killed -9 and restarted twice: every job ends COMPLETED,
    none is completed twice."""
    from test_worker import worker_ini
    agent(routes=ROUTE, sections={"mqtt": FAST},
          extra_ini=worker_ini(max_jobs_active=8, retry_backoff="300ms", timeout="20s"))
    keys = []
    for flap in range(3):
        keys += [gateway.create_job("valve-command", {"deviceId": "v%d" % i}, retries=50)
                 for i in range(10)]
        util.wait_until(lambda: sum(gateway.job(k)["activations"] > 0 for k in keys) >= len(keys) // 2,
                        20, what="jobs under way")
        if flap < 2:
            broker.kill()
            broker.start()
    for k in keys:
        gateway.wait_job(k, lambda j: j["state"] == "COMPLETED", timeout=60)
    for k in keys:
        done = [h for h in gateway.job(k)["history"] if h == "CompleteJob"]
        assert len(done) == 1, gateway.job(k)["history"]
