"""Visible from outside: peer state lines and reminders, the retained MQTT
status topic with its Last Will, /metrics and /healthz, systemd's notify
protocol (READY, STATUS, WATCHDOG) under a socket the test provides, and
journal priority prefixes. Real broker, real stand-in gateway, real binary."""

import json
import os
import re
import signal
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

import util
from util import gw_requests, wait_until


# ---------------------------------------------------------------- helpers

class StatusWatcher:
    """Subscribes to one status topic and keeps every document (retained
    or live) in arrival order."""

    def __init__(self, port, topic):
        import paho.mqtt.client as mqtt
        self.docs = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(client_id="watch-" + uuid.uuid4().hex[:10], clean_session=True)
        subscribed = threading.Event()

        def on_connect(c, u, f, rc):
            c.subscribe(topic, qos=1)

        def on_message(c, u, m):
            with self.lock:
                self.docs.append((json.loads(m.payload.decode()), bool(m.retain)))
        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda c, u, mid, q: subscribed.set()
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise util.Timeout("status watcher could not subscribe")

    def last(self):
        with self.lock:
            return self.docs[-1][0] if self.docs else None

    def wait(self, pred, timeout=20.0, what="status document"):
        def find():
            with self.lock:
                for d, _ in reversed(self.docs):
                    if pred(d):
                        return d
            return None
        return wait_until(find, timeout, what=what)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def http_get(port, path):
    """(status, body text) of GET http://127.0.0.1:PORT/PATH."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse_metrics(text):
    """{'name{labels}': float} from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


class NotifySocket:
    """What systemd does for Type=notify: an AF_UNIX datagram socket whose
    path goes in $NOTIFY_SOCKET; every datagram is kept with its arrival
    time."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []          # (monotonic time, {key: value})
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            kv = dict(l.split("=", 1) for l in data.decode().splitlines() if "=" in l)
            with self.lock:
                self.msgs.append((time.monotonic(), kv))

    def times(self, key, value=None):
        with self.lock:
            return [t for t, kv in self.msgs if key in kv and (value is None or kv[key] == value)]

    def values(self, key):
        with self.lock:
            return [kv[key] for _, kv in self.msgs if key in kv]

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def events(n, prefix="dev", keys=5):
    return [("m2z/%s%d/%d/event" % (prefix, i % keys, i), {"seq": i}) for i in range(n)]


# ---------------------------------------------------------------- status topic

def test_status_topic_online_document_offline_and_last_will(agent, broker, gateway, publish):
    a = agent(sections={"status": {"interval": "1s"}})
    topic = "mqtt2zeebe/%s/status" % re.search(r"\[mqtt\]\nclient_id = (\S+)", a.config_text).group(1)
    w = StatusWatcher(broker.port, topic)
    try:
        doc = w.wait(lambda d: d["state"] == "online", what="online document")
        assert doc["version"] and doc["peers"]["mqtt"]["state"] == "up"
        assert set(doc["peers"]) == {"mqtt", "gateway", "token"}
        assert {"events", "bytes", "oldest_age_s"} <= set(doc["backlog"])

        publish.many(events(20))
        gateway.wait_for(20, status="OK", timeout=30)
        doc = w.wait(lambda d: d["state"] == "online" and d["counters"]["published"] == 20
                     and d["backlog"]["events"] == 0, what="document counting 20 published")
        assert doc["peers"]["gateway"]["state"] == "up"
        assert doc["peers"]["token"]["state"] == "up"
        assert doc["last_publish"] and doc["last_publish"].endswith("Z")

        # A clean stop says offline itself, retained.
        assert a.stop() == 0
        w.wait(lambda d: d == {"state": "offline"}, what="offline on a clean stop")
    finally:
        w.close()
    # A late subscriber sees the retained offline document.
    late = StatusWatcher(broker.port, topic)
    try:
        late.wait(lambda d: d == {"state": "offline"}, timeout=5, what="retained offline")
        # Start again: online; SIGKILL: the broker publishes the Last Will.
        a.start()
        late.wait(lambda d: d["state"] == "online", what="online after restart")
        n = len(late.docs)
        a.kill()
        wait_until(lambda: any(d == {"state": "offline"} for d, _ in late.docs[n:]), 20,
                   what="Last Will offline after SIGKILL")
    finally:
        late.close()


# ---------------------------------------------------------------- metrics

def test_metrics_scrape_matches_gateway(agent, gateway, publish):
    port = util.free_port()
    a = agent(sections={"metrics": {"listen": "127.0.0.1:%d" % port}})
    a.wait_log(r"serving /metrics and /healthz on http://127.0.0.1:%d" % port)
    # the first publishes: two duplicates on purpose (same payload, same id)
    msgs = events(60) + [("m2z/dup/1/event", {"same": 1})] * 3
    publish.many(msgs)
    gateway.wait_for(lambda rs: len(rs) >= 63, timeout=30)

    def scraped():
        st, body = http_get(port, "/metrics")
        m = parse_metrics(body)
        return m if st == 200 and m.get("mqtt2zeebe_backlog_events") == 0 else None
    m = wait_until(scraped, 20, what="a scrape with an empty backlog")
    ok = len(gw_requests(gateway, "OK"))
    dup = len(gw_requests(gateway, "ALREADY_EXISTS"))
    assert ok == 61 and dup == 2, (ok, dup)
    assert m["mqtt2zeebe_messages_published_total"] == ok
    assert m["mqtt2zeebe_messages_duplicate_total"] == dup
    assert m["mqtt2zeebe_mqtt_messages_received_total"] == 63
    assert m["mqtt2zeebe_events_spooled_total"] == 63
    assert m["mqtt2zeebe_dead_letters_total"] == 0
    assert m['mqtt2zeebe_publish_duration_seconds_count'] == ok + dup
    assert m['mqtt2zeebe_publish_duration_seconds_bucket{le="+Inf"}'] == ok + dup
    assert m['mqtt2zeebe_build_info{version="0.1.0"}'] == 1
    assert m['mqtt2zeebe_peer_up{peer="gateway"}'] == 1
    assert m['mqtt2zeebe_peer_up{peer="mqtt"}'] == 1
    assert m['mqtt2zeebe_peer_up{peer="token"}'] == 1
    assert m["mqtt2zeebe_token_expiry_timestamp_seconds"] > time.time()
    assert 0 < time.time() - m["mqtt2zeebe_last_publish_timestamp_seconds"] < 120
    # every counter follows the naming convention
    body = http_get(port, "/metrics")[1]
    for name in re.findall(r"# TYPE (\S+) counter", body):
        assert name.endswith("_total"), name

    st, body = http_get(port, "/healthz")
    assert st == 200 and json.loads(body) == {"status": "ok", "reason": "forwarding"}
    assert http_get(port, "/nope")[0] == 404
    # the SIGUSR1 line agrees with the scrape
    s = a.stats()
    assert s["published"] == ok and s["duplicates"] == dup


def test_unit_is_type_notify_with_a_watchdog():
    with open(os.path.join(util.REPO, "conf", "mqtt2zeebe.service")) as f:
        lines = f.read().splitlines()
    for want in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30s", "Restart=on-failure"):
        assert want in lines, want


# ---------------------------------------------------------------- state lines

def test_gateway_unreachable_state_line_reminder_and_recovery(agent, broker, publish):
    port = util.free_port()     # nothing listens there (yet)
    mport = util.free_port()
    a = agent(gateway=None, oauth=False, sections={
        "zeebe": {"address": "127.0.0.1:%d" % port, "insecure": True, "request_timeout": "2s"},
        "log": {"reminder_interval": "1s"},
        "metrics": {"listen": "127.0.0.1:%d" % mport},
        "forward": {"retry_max": "300ms"},
    })
    publish.many(events(3))
    a.wait_log(r"WARN  \[state\] gateway unreachable: cannot reach 127\.0\.0\.1:%d: connection "
               r"refused; \d events waiting" % port, timeout=20)
    a.wait_log(r"WARN  \[state\] gateway unreachable for \d+s: cannot reach 127\.0\.0\.1:%d: "
               r"connection refused; 3 events waiting" % port, timeout=20)
    # gRPC core's own lines never reach the log raw
    assert "Got args" not in a.log()
    assert not re.search(r"^E\d{4} ", a.log(), re.M)
    # buffering within bounds is healthy; the gauge says the gateway is down
    st, body = http_get(mport, "/healthz")
    assert st == 200 and json.loads(body)["reason"] == "buffering within bounds", body
    m = parse_metrics(http_get(mport, "/metrics")[1])
    assert m['mqtt2zeebe_peer_up{peer="gateway"}'] == 0
    assert m["mqtt2zeebe_backlog_events"] == 3

    from peers.gateway import StandInGateway
    gw = StandInGateway(port=port, host="127.0.0.1")
    gw.start()
    try:
        gw.wait_for(3, status="OK", timeout=30)
        a.wait_log(r"INFO  \[state\] gateway reachable again after \d+\w", timeout=20)
    finally:
        gw.stop()


def test_broker_down_state_line_and_mqtt_reminder(agent, broker, gateway):
    a = agent(sections={"log": {"reminder_interval": "1s"},
                       "mqtt": {"reconnect_min": "200ms", "reconnect_max": "500ms"}})
    a.wait_log(r"INFO  \[state\] MQTT broker connected: 127\.0\.0\.1:%d" % broker.port)
    broker.stop()
    a.wait_log(r"WARN  \[state\] MQTT broker disconnected: connection to 127\.0\.0\.1:%d lost"
               % broker.port, timeout=20)
    a.wait_log(r"WARN  \[state\] MQTT broker disconnected for \d+s: ", timeout=20)
    broker.start()
    a.wait_log(r"INFO  \[state\] MQTT broker connected again after \d+", timeout=30)


def test_ca_file_missing_or_not_pem_is_a_config_error(agent, tmp_path, certs):
    a = agent(start=False)
    der = tmp_path / "gateway.der"
    der.write_bytes(b"\x30\x82\x01\x0a\x02\x82\x01\x01\x00")
    # [zeebe] comes first in the file
    text = a.config_text.replace("ca_certificate = %s" % certs.ca, "ca_certificate = %s" % der, 1)
    bad = tmp_path / "bad.ini"
    bad.write_text(text)
    line = text.splitlines().index("ca_certificate = %s" % der) + 1
    r = util.run_cli(["--check", "-c", str(bad)])
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.startswith("%s:%d: [zeebe] ca_certificate: expected a PEM certificate file" % (bad, line)), err
    # the token endpoint's CA alike; and the agent itself refuses to start
    text2 = a.config_text.replace("ca_certificate = %s" % certs.ca, "ca_certificate = /nonexistent/ca.pem")
    bad.write_text(text2)
    r = util.run_cli(["-c", str(bad)])
    assert r.returncode == 2
    assert "ca_certificate: cannot read the CA file '/nonexistent/ca.pem'" in r.stderr.decode()


# ---------------------------------------------------------------- systemd

def test_notify_ready_status_watchdog_and_stuck_forwarder_restarted(agent, gateway, publish):
    # sun_path holds 108 bytes: pytest's tmp_path can be longer
    ns = NotifySocket(os.path.join(tempfile.mkdtemp(prefix="m2z-"), "notify"))
    mport = util.free_port()
    watchdog_s = 3.0
    env = {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": str(int(watchdog_s * 1e6)),
           "M2Z_TEST_STALL_FORWARDER": "5"}
    try:
        a = agent(env=env, sections={"metrics": {"listen": "127.0.0.1:%d" % mport}})
        wait_until(lambda: ns.times("READY", "1"), 15, what="READY=1")
        wait_until(lambda: any("backlog 0" in v and "mqtt connected" in v for v in ns.values("STATUS")),
                   15, what="STATUS= with the backlog")
        wait_until(lambda: len(ns.times("WATCHDOG", "1")) >= 3, 15, what="3 watchdog pings")

        # Wedge the forwarder after 5 publishes; play systemd's part: no
        # ping for WatchdogSec -> kill (systemd sends SIGABRT) and restart.
        publish.many(events(12, prefix="wd"))
        a.wait_log(r"test hook M2Z_TEST_STALL_FORWARDER: the forwarder loop stalls now", timeout=30)
        stalled_at = time.monotonic()

        def watchdog_expired():
            last = max(ns.times("WATCHDOG", "1"))
            return time.monotonic() - last > watchdog_s
        wait_until(watchdog_expired, 30, what="watchdog pings to stop")
        last_ping = max(ns.times("WATCHDOG", "1"))
        # pings stopped because of the stall (FORWARDER_STALL_MS = 5s after it), not before it
        assert last_ping > stalled_at - watchdog_s
        st, body = http_get(mport, "/healthz")
        assert st == 503 and "forwarder has been stuck" in json.loads(body)["reason"], body
        a.kill()

        a.env.pop("M2Z_TEST_STALL_FORWARDER")
        n_ready = len(ns.times("READY", "1"))
        a.start()
        wait_until(lambda: len(ns.times("READY", "1")) > n_ready, 15, what="READY=1 after the restart")
        gateway.wait_for(lambda rs: {json.loads(r["variables"])["seq"] for r in rs} >= set(range(12)),
                         timeout=30, status="OK")
        pings = len(ns.times("WATCHDOG", "1"))
        wait_until(lambda: len(ns.times("WATCHDOG", "1")) >= pings + 2, 15, what="pings resume")
    finally:
        ns.close()


def test_journal_priority_prefixes(agent, gateway, publish):
    a = agent(start=False)
    open(a.log_path, "ab").close()
    st = os.stat(a.log_path)
    a.env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
    a.start()
    publish("m2z/j/1/event", {"n": 1})
    a.wait_log(r"<6>INFO  \[main\] mqtt2zeebe ")
    lines = [l for l in a.run_log().splitlines() if l and not l.startswith("====")]
    prio = {"ERROR": "<3>", "WARN ": "<4>", "INFO ": "<6>", "DEBUG": "<7>"}
    for l in lines:
        m = re.match(r"<(\d)>(ERROR|WARN |INFO |DEBUG) \[", l)
        if not m:
            continue    # library output that is not ours
        assert "<%s>" % m.group(1) == prio[m.group(2)], l
    assert sum(1 for l in lines if re.match(r"<[3467]>", l)) >= 3
    # no timestamp of our own: the journal adds one
    assert not any(re.match(r"<\d>\d{4}-\d\d-\d\dT", l) for l in lines)


# ---------------------------------------------------------------- idle (issue 12)

def _switches(pid):
    """Context switches so far per thread, keyed "tid:name"."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                n = sum(int(line.split()[1]) for line in f
                        if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")))
        except OSError:
            continue
        out["%s:%s" % (tid, name)] = n
    return out


def test_idle_agent_threads_sleep(agent, gateway, publish):
    """Timers run only while there is work: after its events are delivered
    the forwarder, the group commit, the token refresher and an idle job
    worker sleep without a timeout (or a long one); the main thread ticks
    every 2 s; the MQTT thread waits for its 60 s keepalive. A sleeping
    thread is not switched out, however loaded the machine: no timing here.
    gRPC core's own timer threads are not ours and not counted."""
    a = agent(extra_ini="[worker idle]\njob_type = idle-test\ntopic = plant/{/key}/cmd\n"
                        "poll_timeout = 60s\n")
    ready = time.monotonic()
    for i in range(3):
        publish("m2z/site/dev%d/event" % i, {"seq": i})
    wait_until(lambda: len(gateway.requests()) >= 3, 20, what="3 events at the gateway")
    # past the main tick's busy period (5 s after start) and the forwarder's
    # 2 s before it sleeps untimed
    time.sleep(max(3.0, ready + 6.0 - time.monotonic()))
    before = _switches(a.proc.pid)
    time.sleep(6.0)
    after = _switches(a.proc.pid)
    woke = {k: after[k] - before.get(k, 0) for k in after}
    pid_key = next(k for k in woke if k.startswith("%d:" % a.proc.pid))
    limits = {"m2z-forward": 1, "m2z-commit": 1, "m2z-token": 1, "m2z-worker": 1, "m2z-mqtt": 2}
    for k, n in woke.items():
        name = k.split(":", 1)[1]
        if name in limits:
            assert n <= limits[name], "%s woke %d times in 6 s idle: %s" % (name, n, woke)
    assert woke[pid_key] <= 5, "main thread woke %d times in 6 s idle: %s" % (woke[pid_key], woke)
    names = {k.split(":", 1)[1] for k in woke}
    assert {"m2z-forward", "m2z-commit", "m2z-worker", "m2z-grpc-cq"} <= names, names
