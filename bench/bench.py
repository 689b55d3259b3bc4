#!/usr/bin/python3
"""make bench: the agent side by side with the gRPC floor ("limit") and a
Python bridge, same peers, same events, one run, on loopback.

Peers: mosquitto, the HTTPS token endpoint (tests/peers/token_server.py),
and the C stand-in gateway (bench/fast_gateway.c, TLS + token check), which
is far faster than the Python stand-in so the agent is what gets measured.
Each run gets fresh peers. CPU comes from /proc/<pid>/stat (user+sys),
memory from /proc/<pid>/status (VmHWM peak, VmRSS steady).

Regimes (issue 12), each contender in each, runs interleaved, medians:
  paced 100/s and 1,000/s (a paho publisher at that pace; limit paces its
  calls itself), a gateway answering 20 ms late at 1,000/s (SaaS-like), and
  full speed (mosquitto_pub -l, limit unpaced).
Per run: CPU us/event (sum of the threads' schedstat run time, ns; limit:
getrusage over its call loop), context switches/event (voluntary +
involuntary over /proc/<pid>/task/*/status; limit: getrusage), bytes
written to disk/event (/proc/<pid>/io write_bytes). Separate runs under
strace -c -f count system calls and futex calls per event at 1,000/s (limit:
N calls minus 1 call; not the Python bridge, which crawls under strace). Idle: context switches/s over BENCH_IDLE_S (30) s,
per thread. Static build: peak RSS at full speed and draining a
BENCH_BACKLOG_MB (256) MiB backlog, with start-up time and time to first
publish.

Environment: BENCH_EVENTS (full-speed events per run, 10000), BENCH_REPEAT
(3), BENCH_PACED_S (seconds per paced run, 3), BENCH_IDLE_S (30),
BENCH_BACKLOG_MB (256; 0: off), BENCH_RSS_EVENTS (0: off; e.g. 1000000 to
check that RSS stays flat).

Output: a table on stdout and bench/results/latest.json."""
import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from peers.certs import make_certs  # noqa: E402
from peers.token_server import TokenServer  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
CLIENT_ID, SECRET, AUDIENCE = "bench-client", "bench-secret", "zeebe.bench"
WINDOW = 64
KEYS = 1000


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def mem_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmHWM", "VmRSS")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out


def tasks(pid):
    try:
        return os.listdir("/proc/%d/task" % pid)
    except OSError:
        return []


def run_ns(pid):
    """CPU time of the live threads, ns (schedstat: finer than clock ticks)."""
    t = 0
    for tid in tasks(pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                t += int(f.read().split()[0])
        except OSError:
            pass
    return t


def ctxsw(pid, per_thread=False):
    out = {}
    for tid in tasks(pid):
        try:
            n = 0
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                        n += int(line.split()[1])
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                out[tid + ":" + f.read().strip()] = n
        except OSError:
            pass
    return out if per_thread else sum(out.values())


def disk_written(pid):
    with open("/proc/%d/io" % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith("write_bytes"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise SystemExit("bench: timed out waiting for " + what)


class BenchTokens(TokenServer):
    """Appends every token it issues to a file the C gateway reads."""

    def __init__(self, path, **kw):
        super().__init__(**kw)
        self.path = path
        open(path, "w").close()

    def _issue(self):
        obj = super()._issue()
        with open(self.path, "a") as f:
            f.write(obj["access_token"] + "\n")
        return obj


class Peers:
    def __init__(self, build, tmp, certs, delay_ms=0):
        self.tmp = tempfile.mkdtemp(dir=tmp)
        self.certs = certs
        self.mqtt_port = free_port()
        conf = os.path.join(self.tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    "persistence_location %s/\nmax_queued_messages 0\nmax_inflight_messages 100\n"
                    % (self.mqtt_port, self.tmp))
        self.broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", conf],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: _accepts(self.mqtt_port), 10, "mosquitto")
        self.tokens_file = os.path.join(self.tmp, "tokens")
        self.tokens = BenchTokens(self.tokens_file, cert=certs["server_cert"], key=certs["server_key"],
                                  client_id=CLIENT_ID, client_secret=SECRET, audience=AUDIENCE,
                                  expires_in=3600)
        self.tokens.start()
        self.stats_file = os.path.join(self.tmp, "gw.json")
        port_file = os.path.join(self.tmp, "gw.port")
        self.gw = subprocess.Popen([os.path.join(build, "m2z-fast-gateway"), "--port-file", port_file,
                                    "--cert", certs["server_cert"], "--key", certs["server_key"],
                                    "--tokens", self.tokens_file, "--stats", self.stats_file,
                                   "--delay-ms", str(delay_ms)])
        self.gw_port = int(wait(lambda: os.path.exists(port_file) and open(port_file).read().strip(),
                                10, "fast gateway"))

    def gw_stats(self):
        try:
            with open(self.stats_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"count": 0, "rejected": 0, "first": 0, "last": 0}

    def latencies(self):
        """Stop the gateway; it writes one latency (ms) per line at exit."""
        self.gw.terminate()
        self.gw.wait(10)
        with open(self.stats_file + ".lat") as f:
            return sorted(float(x) for x in f)

    def stop(self):
        if self.gw.poll() is None:
            self.gw.terminate()
            self.gw.wait(10)
        self.tokens.stop()
        self.broker.terminate()
        self.broker.wait(10)


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def payload(i, t=0.0):
    return json.dumps({"seq": i, "key": "k%d" % (i % KEYS), "t": t, "pad": "x" * 40})


def publish_bulk(port, n, start=0):
    """Full speed: mosquitto_pub reading one message per line, QoS 1. At
    most 50,000 per process: mosquitto_pub -l stops once the message id of
    its last message is acknowledged, and ids wrap at 65,535."""
    for first in range(start, start + n, 50000):
        count = min(50000, start + n - first)
        lines = "".join(payload(i) + "\n" for i in range(first, first + count))
        subprocess.run(["mosquitto_pub", "-p", str(port), "-h", "127.0.0.1", "-q", "1", "-t", "dev/d1/ev",
                        "-l", "-i", "bench-pub-%d" % first], input=lines.encode(), check=True, timeout=600)


def publish_at_rate(port, n, rate):
    if rate <= 0:
        return publish_bulk(port, n)
    c = mqtt.Client(client_id="bench-rate")
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.monotonic()
    for i in range(n):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        c.publish("dev/d1/ev", payload(i, time.monotonic()), qos=1)
    wait(lambda: not c._out_messages, 60, "publisher's PUBACKs")
    c.loop_stop()
    c.disconnect()


def agent_conf(p, sync, spool):
    return """[zeebe]
address = localhost:%d
ca_certificate = %s
max_in_flight = %d
[oauth]
url = %s
client_id = %s
client_secret = %s
audience = %s
ca_certificate = %s
[mqtt]
host = 127.0.0.1
port = %d
client_id = bench-agent
[spool]
directory = %s
sync = %s
[log]
level = warn
stats_interval = 0
[route ev]
topic = dev/+/ev
message_name = device-event
correlation_key = {/key}
""" % (p.gw_port, p.certs["ca"], WINDOW, p.tokens.url, CLIENT_ID, SECRET, AUDIENCE, p.certs["ca"],
       p.mqtt_port, spool, sync)


def start_agent(binary, p, sync, spool=None):
    conf = os.path.join(p.tmp, "agent.ini")
    with open(conf, "w") as f:
        f.write(agent_conf(p, sync, spool or os.path.join(p.tmp, "spool")))
    log = open(os.path.join(p.tmp, "agent.log"), "w+")
    proc = subprocess.Popen([binary, "-c", conf, "--log-level", "info"], stderr=log)
    wait(lambda: "subscribed to" in open(log.name).read(), 20, "agent ready")
    wait(lambda: p.tokens.fetches > 0, 20, "agent token")
    return proc


def start_bridge(p):
    proc = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "bench", "python_bridge.py"),
                             "--mqtt-port", str(p.mqtt_port), "--topic", "dev/+/ev",
                             "--address", "localhost:%d" % p.gw_port, "--ca", p.certs["ca"],
                             "--token-url", p.tokens.url, "--client-id", CLIENT_ID,
                             "--client-secret", SECRET, "--audience", AUDIENCE,
                             "--window", str(WINDOW)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "subscribed"
    return proc


# name, events/s (0: full speed), gateway delay (ms)
REGIMES = [("100/s", 100, 0), ("1000/s", 1000, 0), ("1000/s gw+20ms", 1000, 20), ("full speed", 0, 0)]


def events_for(args, rate):
    return args.full_n if rate == 0 else int(rate * args.paced_s)


def limit_cmd(args, p, n, rate):
    return [os.path.join(args.build, "m2z-limit"), "--address", "localhost:%d" % p.gw_port, "--ca",
            p.certs["ca"], "--count", str(n), "--window", str(WINDOW), "--keys", str(KEYS),
            "--token-url", p.tokens.url, "--client-id", CLIENT_ID, "--client-secret", SECRET,
            "--audience", AUDIENCE, "--rate", str(rate)]


def start_contender(kind, args, p):
    if kind == "python":
        return start_bridge(p)
    return start_agent(args.static_bin if kind == "agent-static" else args.bin, p, "group")


def quantiles(lat):
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] if lat else None  # noqa: E731
    return q(0.50), q(0.99)


def run_one(kind, args, regime):
    """One contender in one regime: fresh peers, N events."""
    _, rate, delay = regime
    n = events_for(args, rate)
    p = Peers(args.build, args.tmp, args.certs, delay)
    try:
        if kind == "limit":
            out = subprocess.run(limit_cmd(args, p, n, rate), capture_output=True, text=True,
                                 timeout=600, check=True)
            r = json.loads(out.stdout)
            wait(lambda: p.gw_stats()["count"] >= n, 30, "limit arrivals")
            p50, p99 = quantiles(p.latencies())
            return {"events_per_s": n / r["seconds"], "cpu_us_per_event": r["cpu_s"] / n * 1e6,
                    "ctxsw_per_event": r["ctx_switches"] / n, "disk_bytes_per_event": 0,
                    "peak_rss_kb": r["max_rss_kb"], "p50_ms": p50, "p99_ms": p99}
        proc = start_contender(kind, args, p)
        try:
            c0, x0, d0 = run_ns(proc.pid), ctxsw(proc.pid), disk_written(proc.pid)
            t0 = time.monotonic()
            publish_at_rate(p.mqtt_port, n, rate)
            wait(lambda: p.gw_stats()["count"] >= n, 600, "%s arrivals" % kind)
            s = p.gw_stats()
            time.sleep(0.2)             # the last acks reach the spool
            r = {"events_per_s": n / (s["last"] - t0), "cpu_us_per_event": (run_ns(proc.pid) - c0) / n / 1e3,
                 "ctxsw_per_event": (ctxsw(proc.pid) - x0) / n,
                 "disk_bytes_per_event": (disk_written(proc.pid) - d0) / n,
                 "peak_rss_kb": mem_kb(proc.pid)["VmHWM"]}
        finally:
            proc.terminate()
            proc.wait(20)
        r["p50_ms"], r["p99_ms"] = quantiles(p.latencies())
        return r
    finally:
        p.stop()


def strace_counts(path):
    """(all calls, futex calls, {name: calls}) from an strace -c summary."""
    calls, futex, by = 0, 0, {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[3].isdigit():
            if f[-1] == "total":
                calls = int(f[3])
            else:
                by[f[-1]] = int(f[3])
                if f[-1] == "futex":
                    futex = int(f[3])
    return calls, futex, by


def syscalls_run(kind, args, n, rate):
    """System calls per event under strace -c -f (a separate run: tracing
    distorts timing). Agent and bridge: attached once ready. Limit: N calls
    minus 1 call, which removes its start-up."""
    p = Peers(args.build, args.tmp, args.certs)
    out = os.path.join(p.tmp, "strace")
    try:
        if kind == "limit":
            res = []
            for count in (n, 1):
                subprocess.run(["strace", "-c", "-f", "-o", out] + limit_cmd(args, p, count, rate),
                               capture_output=True, check=True, timeout=600)
                res.append(strace_counts(out))
            return {"syscalls_per_event": (res[0][0] - res[1][0]) / (n - 1),
                    "futex_per_event": (res[0][1] - res[1][1]) / (n - 1),
                    "by_call": {k: (v - res[1][2].get(k, 0)) / (n - 1) for k, v in res[0][2].items()}}
        proc = start_contender(kind, args, p)
        try:
            st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(proc.pid)],
                                  stderr=subprocess.PIPE, text=True)
            st.stderr.readline()        # "Process N attached"
            time.sleep(0.5)
            publish_at_rate(p.mqtt_port, n, rate)
            wait(lambda: p.gw_stats()["count"] >= n, 600, "%s arrivals under strace" % kind)
            time.sleep(0.2)
            st.send_signal(2)
            st.wait(30)
        finally:
            proc.terminate()
            proc.wait(20)
        calls, futex, by = strace_counts(out)
        return {"syscalls_per_event": calls / n, "futex_per_event": futex / n,
                "by_call": {k: v / n for k, v in by.items()}}
    finally:
        p.stop()


IDLE_SETTLE_S = 8    # the main tick is 250 ms for 5 s after a change, then 2 s


def ours(thread):
    """Threads of our code or our libraries (named m2z-*, the main thread,
    libmosquitto's loop, libmicrohttpd's); the rest are gRPC core's."""
    name = thread.split(":", 1)[1]
    return name.startswith(("m2z-", "mqtt2zeebe", "mosquitto", "MHD"))


def thread_wakeups(pid, seconds):
    x0 = ctxsw(pid, True)
    c0 = run_ns(pid)
    time.sleep(seconds)
    x1, c1 = ctxsw(pid, True), run_ns(pid)
    per = {k: (x1[k] - x0.get(k, 0)) / seconds for k in x1 if x1[k] != x0.get(k, 0)}
    return {"seconds": seconds, "wakeups_per_s": sum(per.values()), "per_thread": per,
            "threads": len(x1), "cpu_pct": (c1 - c0) / 1e9 / seconds * 100}


def idle_run(args):
    """Context switches per second with nothing to do, per thread: the agent
    after it forwarded 20 events and settled (IDLE_SETTLE_S), and the limit
    (gRPC core alone: channel, token, completion thread) after 20 calls."""
    p = Peers(args.build, args.tmp, args.certs)
    try:
        proc = start_agent(args.bin, p, "group")
        try:
            publish_at_rate(p.mqtt_port, 20, 100)
            wait(lambda: p.gw_stats()["count"] >= 20, 30, "idle run's events")
            time.sleep(IDLE_SETTLE_S)
            agent = thread_wakeups(proc.pid, args.idle_s)
        finally:
            proc.terminate()
            proc.wait(20)
        lim = subprocess.Popen(limit_cmd(args, p, 20, 100) + ["--idle", str(int(args.idle_s + IDLE_SETTLE_S + 5))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            for line in lim.stderr:
                if line.startswith("limit: idle"):
                    break
            else:
                raise RuntimeError("the limit ended before its idle time")
            time.sleep(IDLE_SETTLE_S)
            limit = thread_wakeups(lim.pid, args.idle_s)
        finally:
            lim.terminate()
            lim.wait(20)
        agent["limit"] = limit
        agent["own_wakeups_per_s"] = sum(v for k, v in agent["per_thread"].items() if ours(k))
        return agent
    finally:
        p.stop()


def backlog_run(args, mib):
    """The static agent fills a spool of MIB MiB while the gateway is down,
    then starts on it: start-up time, time to first publish, peak RSS while
    draining (up to 15 s)."""
    n = int(mib * (1 << 20) * 0.95 / 4200)
    p = Peers(args.build, args.tmp, args.certs)
    spool = os.path.join(p.tmp, "spool")
    try:
        p.gw.terminate()
        p.gw.wait(10)
        proc = start_agent(args.static_bin, p, "group", spool)
        fill_rss = None
        try:
            for first in range(0, n, 50000):      # see publish_bulk
                lines = "".join(json.dumps({"seq": i, "key": "k%d" % (i % KEYS), "pad": "x" * 4000}) + "\n"
                                for i in range(first, min(n, first + 50000)))
                subprocess.run(["mosquitto_pub", "-p", str(p.mqtt_port), "-h", "127.0.0.1", "-q", "1",
                                "-t", "dev/d1/ev", "-l", "-i", "fill-%d" % first],
                               input=lines.encode(), check=True, timeout=900)
            fill_rss = mem_kb(proc.pid)["VmHWM"]
        finally:
            proc.terminate()
            proc.wait(60)
    finally:
        p.stop()
    size = sum(os.path.getsize(os.path.join(spool, f)) for f in os.listdir(spool))
    p = Peers(args.build, args.tmp, args.certs)
    try:
        conf = os.path.join(p.tmp, "agent.ini")
        with open(conf, "w") as f:
            f.write(agent_conf(p, "group", spool))
        log = open(os.path.join(p.tmp, "agent.log"), "w+")
        t0 = time.monotonic()
        proc = subprocess.Popen([args.static_bin, "-c", conf, "--log-level", "info"], stderr=log)
        try:
            wait(lambda: p.gw_stats()["count"] > 0, 120, "first publish from the backlog")
            first = p.gw_stats()["first"] - t0
            wait(lambda: "subscribed to" in open(log.name).read(), 60, "agent ready")
            ready = time.monotonic() - t0
            end = time.monotonic() + 15
            while time.monotonic() < end and p.gw_stats()["count"] < n:
                time.sleep(0.2)
            drained = p.gw_stats()["count"]
            rss = mem_kb(proc.pid)["VmHWM"]
        finally:
            proc.terminate()
            proc.wait(60)
        return {"backlog_mib": size / (1 << 20), "events": n, "fill_peak_rss_kb": fill_rss,
                "first_publish_s": first, "subscribed_s": ready, "drained_in_15s": drained,
                "drain_peak_rss_kb": rss}
    finally:
        p.stop()


def rss_flatness(args, n):
    p = Peers(args.build, args.tmp, args.certs)
    try:
        proc = start_agent(args.bin, p, "group")
        samples = []
        try:
            chunk = max(1, n // 10)
            for i in range(0, n, chunk):
                publish_bulk(p.mqtt_port, chunk, start=i)
                wait(lambda: p.gw_stats()["count"] >= i + chunk, 600, "rss arrivals")
                samples.append((i + chunk, mem_kb(proc.pid)["VmRSS"]))
            return samples
        finally:
            proc.terminate()
            proc.wait(20)
    finally:
        p.stop()


def med(runs, k):
    vals = [r[k] for r in runs if r.get(k) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, f="%.1f"):
    return "-" if v is None else f % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--static-bin", help="the STATIC=1 build of the agent (what a board runs)")
    ap.add_argument("--only", help="comma-separated parts: regimes,strace,idle,backlog")
    a = ap.parse_args()
    a.tmp = tempfile.mkdtemp(prefix="m2z-bench-", dir=os.environ.get("BENCH_TMP"))
    a.certs = make_certs(os.path.join(a.tmp, "certs"))
    a.full_n = int(os.environ.get("BENCH_EVENTS", "10000"))
    a.paced_s = float(os.environ.get("BENCH_PACED_S", "3"))
    a.idle_s = float(os.environ.get("BENCH_IDLE_S", "30"))
    parts = (a.only or "regimes,strace,idle,backlog").split(",")
    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    kinds = ["agent", "limit", "python"]
    t_start = time.monotonic()
    runs = {}
    if "regimes" in parts:
        for r in range(repeat):                 # interleaved: noise hits all alike
            for reg in REGIMES:
                ks = kinds + (["agent-static"] if a.static_bin and reg[1] == 0 else [])
                for k in ks:
                    x = run_one(k, a, reg)
                    runs.setdefault(reg[0], {}).setdefault(k, []).append(x)
                    print("  run %d %-15s %-12s %7.0f events/s %7.1f us/event %5.2f cs/event" % (
                        r + 1, reg[0], k, x["events_per_s"], x["cpu_us_per_event"], x["ctxsw_per_event"]),
                        flush=True)
    summary = {reg: {k: {m: med(v, m) for m in v[0]} for k, v in ks.items()} for reg, ks in runs.items()}
    sysc = {}
    if "strace" in parts:
        # Not the Python bridge: under strace -f its grpcio threads slow to
        # a crawl (a 3,000-event run did not finish in 10 minutes).
        for k in ("agent", "limit"):
            sysc[k] = syscalls_run(k, a, int(1000 * a.paced_s), 1000)
            print("  strace %-6s %.2f syscalls/event, %.2f futex/event (%s)" % (
                k, sysc[k]["syscalls_per_event"], sysc[k]["futex_per_event"],
                ", ".join("%s %.2f" % kv for kv in sorted(sysc[k]["by_call"].items(), key=lambda kv: -kv[1])
                          if kv[1] >= 0.05)), flush=True)
    idle = idle_run(a) if "idle" in parts else None
    mib = float(os.environ.get("BENCH_BACKLOG_MB", "256"))
    backlog = backlog_run(a, mib) if "backlog" in parts and mib > 0 and a.static_bin else None
    rss_n = int(os.environ.get("BENCH_RSS_EVENTS", "0"))
    rss = rss_flatness(a, rss_n) if rss_n else None

    machine = {"nproc": os.cpu_count(), "kernel": platform.release(),
               "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                            if l.startswith("model name")), platform.machine())}
    result = {"full_speed_events": a.full_n, "paced_s": a.paced_s, "repeat": repeat, "window": WINDOW,
              "keys": KEYS, "machine": machine, "median": summary, "syscalls": sysc, "idle": idle,
              "backlog": backlog, "rss_samples": rss, "runs": runs, "bench_s": time.monotonic() - t_start,
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "latest.json"), "w") as f:
        json.dump(result, f, indent=1)

    print("\nmqtt2zeebe bench: medians of %d interleaved runs, window %d, %d keys, TLS + OAuth, "
          "spool sync=group" % (repeat, WINDOW, KEYS))
    print("machine: %s, %d cores, Linux %s\n" % (machine["cpu"], machine["nproc"], machine["kernel"]))
    if summary:
        print("| regime | contender | events/s | CPU us/event | ctx sw/event | disk B/event | p50 ms | p99 ms"
              " | peak RSS KiB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for reg, ks in summary.items():
            for k, s in ks.items():
                print("| %s | %s | %.0f | %.1f | %.2f | %.0f | %s | %s | %d |" % (
                    reg, k, s["events_per_s"], s["cpu_us_per_event"], s["ctxsw_per_event"],
                    s["disk_bytes_per_event"], fmt(s["p50_ms"], "%.2f"), fmt(s["p99_ms"], "%.2f"),
                    s["peak_rss_kb"]))
        print()
        for reg, ks in summary.items():
            ag = ks["agent"]["cpu_us_per_event"]
            print("%-15s CPU/event agent/limit %.2f (target <= 1.3), agent/python %.2f (target <= 0.35)" % (
                reg, ag / ks["limit"]["cpu_us_per_event"], ag / ks["python"]["cpu_us_per_event"]))
    if sysc:
        print("\nat 1000 events/s under strace -c -f (%d events):" % int(1000 * a.paced_s))
        for k, s in sysc.items():
            print("  %-6s %.2f system calls/event, %.2f futex/event" % (
                k, s["syscalls_per_event"], s["futex_per_event"]))
    if idle:
        for name, x in (("agent", idle), ("limit", idle["limit"])):
            print("\nidle %s over %.0f s: %.2f wake-ups/s (context switches), %.3f %% CPU, %d threads; "
                  "per thread: %s" % (name, x["seconds"], x["wakeups_per_s"], x["cpu_pct"], x["threads"],
                                      ", ".join("%s %.2f" % kv for kv in sorted(x["per_thread"].items()))))
        own = sum(v for k, v in idle["per_thread"].items() if ours(k))
        print("idle agent: %.2f wake-ups/s in its own threads (target <= 1), %.2f in gRPC core's timer "
              "threads (the limit's: %.2f)" % (own, idle["wakeups_per_s"] - own, idle["limit"]["wakeups_per_s"]))
    if backlog:
        print("\nstatic agent on a %.0f MiB backlog (%d events): first publish after %.2f s, subscribed after"
              " %.2f s, %d events drained in 15 s; peak RSS %d KiB draining, %d KiB filling"
              % (backlog["backlog_mib"], backlog["events"], backlog["first_publish_s"], backlog["subscribed_s"],
                 backlog["drained_in_15s"], backlog["drain_peak_rss_kb"], backlog["fill_peak_rss_kb"] or 0))
    if rss:
        print("RSS (KiB) after N events: " + ", ".join("%d: %d" % s for s in rss))
    print("\nbench took %.0f s; results: bench/results/latest.json" % result["bench_s"])


if __name__ == "__main__":
    main()
