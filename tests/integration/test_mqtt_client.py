"""Our own MQTT client (src/mqtt_in.c) against a real mosquitto and against
hostile or odd brokers: a scripted raw-MQTT server on 127.0.0.1 (RawBroker)
that sends exactly the bytes a test wants.

Every event carries {"seq": N}; the gateway's OK answers are compared with
what was published."""

import json
import socket
import struct
import threading
import time

import pytest

import util

FAST = {"reconnect_min": "200ms", "reconnect_max": "1s", "keepalive": "5s"}
ROUTE = {"ev": {"topic": "dev/+/ev", "message_name": "device-event",
                "correlation_key": "{/key}"}}


def seqs_ok(gw):
    return [json.loads(util.field(r, "variables"))["seq"] for r in gw.requests(status="OK")]


def wait_seqs(gw, want, timeout=60):
    util.wait_until(lambda: set(seqs_ok(gw)) >= set(want), timeout,
                    what="seqs %s.. at the gateway" % sorted(want)[:5])


# ---------------------------------------------------------------- raw broker

def _remaining(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body=b""):
    return bytes([first]) + _remaining(len(body)) + body


def mstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def connack(session_present=0, rc=0):
    return packet(0x20, bytes([session_present, rc]))


def publish_pkt(topic, payload, qos=1, pid=1, dup=False):
    first = 0x30 | (qos << 1) | (0x08 if dup else 0)
    body = mstr(topic) + (struct.pack(">H", pid) if qos else b"") + json.dumps(payload).encode()
    return packet(first, body)


def ack(kind, pid):
    first = {"puback": 0x40, "pubrec": 0x50, "pubrel": 0x62, "pubcomp": 0x70}[kind]
    return packet(first, struct.pack(">H", pid))


class Conn:
    def __init__(self, sock, n):
        self.sock = sock
        self.n = n
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, want, deadline):
        while len(self.buf) < want:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("agent closed the connection")
            self.buf += chunk

    def read(self, timeout=15.0):
        """(type, flags, body) of the next packet; PINGREQ is answered and
        the agent's own publishes (its status topic) acknowledged."""
        deadline = time.monotonic() + timeout
        while True:
            self._fill(2, deadline)
            mult, length, i = 1, 0, 1
            while True:
                self._fill(i + 1, deadline)
                b = self.buf[i]
                length += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            self._fill(i + length, deadline)
            first, body = self.buf[0], self.buf[i:i + length]
            self.buf = self.buf[i + length:]
            if first >> 4 == 12:
                self.send(b"\xd0\x00")
                continue
            if first >> 4 == 3:
                qos = (first >> 1) & 3
                if qos == 1:
                    tlen = struct.unpack(">H", body[:2])[0]
                    self.send(packet(0x40, body[2 + tlen:4 + tlen]))
                continue
            return first >> 4, first & 0x0F, body

    def expect(self, ptype, timeout=15.0):
        t, flags, body = self.read(timeout)
        assert t == ptype, "expected packet type %d, got %d (%r)" % (ptype, t, body)
        return body

    def expect_ack(self, ptype, pid):
        body = self.expect(ptype)
        assert struct.unpack(">H", body[:2])[0] == pid, (ptype, body)

    def handshake(self, session_present=0):
        """CONNECT -> CONNACK, SUBSCRIBE -> SUBACK (all granted QoS 1)."""
        self.expect(1)
        self.send(connack(session_present))
        body = self.expect(8)
        pid, rest, n = body[:2], body[2:], 0
        while rest:
            ln = struct.unpack(">H", rest[:2])[0]
            rest = rest[2 + ln + 1:]
            n += 1
        self.send(packet(0x90, pid + b"\x01" * n))
        return struct.unpack(">H", pid)[0]

    def idle(self):
        """Answer pings until the agent goes away."""
        try:
            while True:
                self.read(timeout=3600)
        except (EOFError, OSError):
            pass


class RawBroker:
    """MQTT on 127.0.0.1 that runs SCRIPT(conn) for every connection the
    agent makes (conn.n counts them from 1); failures are kept for the test."""

    def __init__(self, script):
        self.script = script
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.connections = 0
        self.errors = []
        self.socks = []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            self.connections += 1
            self.socks.append(s)
            threading.Thread(target=self._run, args=(Conn(s, self.connections),),
                             daemon=True).start()

    def _run(self, conn):
        try:
            self.script(conn)
        except (EOFError, OSError):
            pass
        except AssertionError as e:
            self.errors.append("connection %d: %s" % (conn.n, e))
        finally:
            conn.sock.close()

    def stop(self):
        self.stopping = True
        self.lsock.close()
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def raw_broker():
    made = []

    def make(script):
        b = RawBroker(script)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def raw_agent(agent, rb, **kw):
    return agent(routes=ROUTE, broker=None,
                 sections={"mqtt": dict(FAST, host="127.0.0.1", port=rb.port)}, **kw)


def ev(seq, key="k"):
    return {"seq": seq, "key": key}


def deliver(c, seq, pid):
    """A QoS 1 event the agent must acknowledge."""
    c.send(publish_pkt("dev/a/ev", ev(seq), pid=pid))
    c.expect_ack(4, pid)


# ---------------------------------------------------------------- hostile brokers

def test_broker_that_never_sends_connack_is_retried(agent, gateway, raw_broker):
    def script(c):
        if c.n == 1:
            c.expect(1)
            c.idle()          # TCP up, CONNECT read, never a CONNACK
            return
        c.handshake()
        deliver(c, 5, 9)
        c.idle()

    rb = raw_broker(script)
    a = raw_agent(agent, rb, wait_ready=False)
    a.wait_ready(timeout=30)
    wait_seqs(gateway, [5])
    assert "no CONNACK within 5000 ms" in a.log()
    assert rb.connections >= 2
    assert not rb.errors, rb.errors


def test_qos2_duplicate_before_pubrel_is_spooled_once(agent, gateway, raw_broker):
    def script(c):
        c.handshake()
        c.send(publish_pkt("dev/a/ev", ev(7), qos=2, pid=7))
        c.expect_ack(5, 7)                      # PUBREC
        c.send(publish_pkt("dev/a/ev", ev(7), qos=2, pid=7, dup=True))
        c.expect_ack(5, 7)                      # PUBREC again, not a second event
        c.send(ack("pubrel", 7))
        c.expect_ack(7, 7)                      # PUBCOMP
        c.send(publish_pkt("dev/a/ev", ev(8), qos=2, pid=8))
        c.expect_ack(5, 8)
        c.send(ack("pubrel", 8))
        c.expect_ack(7, 8)
        c.idle()

    rb = raw_broker(script)
    a = raw_agent(agent, rb)
    wait_seqs(gateway, [7, 8])
    # same correlation key: forwarded in order, so a duplicate 7 would have
    # reached the gateway (answered ALREADY_EXISTS: same derived message id)
    # before 8
    tried = [json.loads(util.field(r, "variables"))["seq"] for r in util.gw_attempts(gateway)]
    assert tried == [7, 8], tried
    assert rb.connections == 1
    assert not rb.errors, rb.errors
    assert a.running()


@pytest.mark.parametrize("bad", ["suback", "puback"])
def test_ack_for_an_id_we_never_sent_drops_the_connection(agent, gateway, raw_broker, bad):
    def script(c):
        sub_id = c.handshake()
        if c.n == 1:
            c.send(packet(0x90, struct.pack(">H", (sub_id + 100) % 65536 or 1) + b"\x01")
                   if bad == "suback" else ack("puback", 4242))
        else:
            deliver(c, 3, 3)
        c.idle()

    rb = raw_broker(script)
    a = raw_agent(agent, rb)
    wait_seqs(gateway, [3])
    util.wait_until(lambda: rb.connections >= 2, 20, what="a reconnect")
    assert ("did not send" if bad == "suback" else "not in flight") in a.log()
    assert not rb.errors, rb.errors


# ---------------------------------------------------------------- real broker

def test_burst_of_200_all_acked_and_spooled(agent, gateway, publish):
    a = agent(routes=ROUTE, sections={"mqtt": FAST})
    n = 200
    # publish.many waits for every PUBACK from the broker; the broker itself
    # holds each until the agent's (batched) PUBACK came back
    publish.many([("dev/d%d/ev" % (i % 4), ev(i, "k%d" % (i % 4))) for i in range(n)])
    wait_seqs(gateway, range(n))
    assert sorted(set(seqs_ok(gateway))) == list(range(n))
    assert a.running()


def test_kill_mid_burst_loses_nothing(agent, gateway, publish):
    n = 2000
    a = agent(routes=ROUTE, sections={"mqtt": FAST})
    msgs = [("dev/d%d/ev" % (i % 8), ev(i, "k%d" % (i % 8))) for i in range(n)]
    done = threading.Event()
    t = threading.Thread(target=lambda: (publish.many(msgs, timeout=300), done.set()))
    t.start()
    util.wait_until(lambda: len(gateway.requests(status="OK")) >= 50, 30,
                    what="the burst under way")
    a.kill()
    a.start()
    t.join(300)
    assert done.is_set(), "the publisher did not finish"
    wait_seqs(gateway, range(n), timeout=180)
    assert set(seqs_ok(gateway)) == set(range(n))
