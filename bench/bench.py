#!/usr/bin/python3
"""make bench: the agent side by side with the gRPC floor ("limit") and a
Python bridge, same peers, same events, one run, on loopback.

Peers: mosquitto, the HTTPS token endpoint (tests/peers/token_server.py),
and the C stand-in gateway (bench/fast_gateway.c, TLS + token check), which
is far faster than the Python stand-in so the agent is what gets measured.
Each run gets fresh peers. CPU comes from /proc/<pid>/stat (user+sys),
memory from /proc/<pid>/status (VmHWM peak, VmRSS steady).

Environment: BENCH_EVENTS (default 20000 per throughput run), BENCH_REPEAT
(3), BENCH_RATE (1000 events/s for latency), BENCH_RSS_EVENTS (0: off; e.g.
1000000 to check that RSS stays flat).

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
    def __init__(self, build, tmp, certs):
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
                                    "--tokens", self.tokens_file, "--stats", self.stats_file])
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
    c = mqtt.Client(client_id="bench-rate")
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.monotonic()
    for i in range(n):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        c.publish("dev/d1/ev", payload(i, time.monotonic()), qos=1)
    time.sleep(0.5)
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


def start_agent(binary, p, sync):
    conf = os.path.join(p.tmp, "agent.ini")
    with open(conf, "w") as f:
        f.write(agent_conf(p, sync, os.path.join(p.tmp, "spool")))
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


def throughput_run(kind, args, n):
    """One run of one contender: fresh peers, N events, CPU and memory."""
    p = Peers(args.build, args.tmp, args.certs)
    try:
        if kind == "limit":
            gw_cpu0, br_cpu0 = cpu_s(p.gw.pid), cpu_s(p.broker.pid)
            out = subprocess.run([os.path.join(args.build, "m2z-limit"), "--address",
                                  "localhost:%d" % p.gw_port, "--ca", p.certs["ca"], "--count", str(n),
                                  "--window", str(WINDOW), "--keys", str(KEYS), "--token-url", p.tokens.url,
                                  "--client-id", CLIENT_ID, "--client-secret", SECRET, "--audience",
                                  AUDIENCE], capture_output=True, text=True, timeout=600, check=True)
            r = json.loads(out.stdout)
            s = p.gw_stats()
            wait(lambda: p.gw_stats()["count"] >= n, 30, "limit arrivals")
            s = p.gw_stats()
            return {"events_per_s": n / (s["last"] - s["first"]), "cpu_us_per_event": r["cpu_s"] / n * 1e6,
                    "peak_rss_kb": r["max_rss_kb"], "steady_rss_kb": None,
                    "gateway_cpu_s": cpu_s(p.gw.pid) - gw_cpu0, "broker_cpu_s": cpu_s(p.broker.pid) - br_cpu0,
                    "wall_s": s["last"] - s["first"]}
        if kind.startswith("agent"):
            binary = args.static_bin if kind.startswith("agent-static") else args.bin
            proc = start_agent(binary, p, kind.split(":")[1])
        else:
            proc = start_bridge(p)
        try:
            cpu0, gw_cpu0, br_cpu0 = cpu_s(proc.pid), cpu_s(p.gw.pid), cpu_s(p.broker.pid)
            t0 = time.monotonic()
            publish_bulk(p.mqtt_port, n)
            wait(lambda: p.gw_stats()["count"] >= n, 600, "%s arrivals" % kind)
            s = p.gw_stats()
            time.sleep(0.2)
            cpu = cpu_s(proc.pid) - cpu0
            mem = mem_kb(proc.pid)
            return {"events_per_s": n / (s["last"] - t0), "cpu_us_per_event": cpu / n * 1e6,
                    "peak_rss_kb": mem["VmHWM"], "steady_rss_kb": mem["VmRSS"],
                    "gateway_cpu_s": cpu_s(p.gw.pid) - gw_cpu0, "broker_cpu_s": cpu_s(p.broker.pid) - br_cpu0,
                    "wall_s": s["last"] - t0}
        finally:
            proc.terminate()
            proc.wait(20)
    finally:
        p.stop()


def latency_and_idle(args):
    p = Peers(args.build, args.tmp, args.certs)
    try:
        proc = start_agent(args.bin, p, "group")
        try:
            time.sleep(1)
            c0 = cpu_s(proc.pid)
            time.sleep(args.idle_s)
            idle = (cpu_s(proc.pid) - c0) / args.idle_s * 100
            n = args.rate * 5
            publish_at_rate(p.mqtt_port, n, args.rate)
            wait(lambda: p.gw_stats()["count"] >= n, 60, "latency arrivals")
            lat = p.latencies()
            q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]  # noqa: E731
            return {"rate": args.rate, "events": n, "p50_ms": q(0.50), "p99_ms": q(0.99),
                    "max_ms": lat[-1], "idle_cpu_pct": idle}
        finally:
            proc.terminate()
            proc.wait(20)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--static-bin", help="the STATIC=1 build of the agent (what a board runs)")
    a = ap.parse_args()
    a.tmp = tempfile.mkdtemp(prefix="m2z-bench-")
    a.certs = make_certs(os.path.join(a.tmp, "certs"))
    a.rate = int(os.environ.get("BENCH_RATE", "1000"))
    a.idle_s = 10
    n = int(os.environ.get("BENCH_EVENTS", "20000"))
    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    kinds = ["agent:group", "agent:always", "limit", "python"]
    if a.static_bin:
        kinds.insert(1, "agent-static:group")
    runs = {k: [] for k in kinds}
    for r in range(repeat):                 # interleaved: noise hits all alike
        for k in kinds:
            runs[k].append(throughput_run(k, a, n if k != "agent:always" else min(n, 10000)))
            print("  run %d %-13s %8.0f events/s %7.1f us/event" % (
                r + 1, k, runs[k][-1]["events_per_s"], runs[k][-1]["cpu_us_per_event"]), flush=True)
    summary = {k: {m: med(runs[k], m) for m in runs[k][0]} for k in kinds}
    lat = latency_and_idle(a)
    rss_n = int(os.environ.get("BENCH_RSS_EVENTS", "0"))
    rss = rss_flatness(a, rss_n) if rss_n else None
    ag, lim, py = summary["agent:group"], summary["limit"], summary["python"]
    ratios = {
        "cpu_agent_over_limit": ag["cpu_us_per_event"] / lim["cpu_us_per_event"],
        "cpu_agent_over_python": ag["cpu_us_per_event"] / py["cpu_us_per_event"],
        "rss_agent_over_python": ag["peak_rss_kb"] / py["peak_rss_kb"],
    }
    st = summary.get("agent-static:group")
    if st:
        ratios.update({
            "cpu_agent_static_over_limit": st["cpu_us_per_event"] / lim["cpu_us_per_event"],
            "cpu_agent_static_over_python": st["cpu_us_per_event"] / py["cpu_us_per_event"],
            "rss_agent_static_over_python": st["peak_rss_kb"] / py["peak_rss_kb"],
        })
    machine = {"nproc": os.cpu_count(), "kernel": platform.release(),
               "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                            if l.startswith("model name")), platform.machine())}
    result = {"events_per_run": n, "repeat": repeat, "window": WINDOW, "keys": KEYS,
              "machine": machine, "median": summary, "ratios": ratios, "latency": lat,
              "rss_samples": rss, "runs": runs, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "latest.json"), "w") as f:
        json.dump(result, f, indent=1)

    print("\nmqtt2zeebe bench: %d events/run, medians of %d runs, window %d, %d keys, TLS + OAuth;"
          % (n, repeat, WINDOW, KEYS))
    print("machine: %s, %d cores, Linux %s\n" % (machine["cpu"], machine["nproc"], machine["kernel"]))
    print("| contender | spool sync | events/s | CPU us/event | peak RSS KiB | steady RSS KiB | gateway CPU s | broker CPU s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for k in kinds:
        s = summary[k]
        print("| %s | %s | %.0f | %.1f | %d | %s | %.2f | %.2f |" % (
            k.split(":")[0], k.split(":")[1] if ":" in k else "-", s["events_per_s"], s["cpu_us_per_event"],
            s["peak_rss_kb"], "%d" % s["steady_rss_kb"] if s["steady_rss_kb"] else "-",
            s["gateway_cpu_s"], s["broker_cpu_s"]))
    print("\nratios: CPU/event agent/limit %.2f, agent/python %.2f; peak RSS agent/python %.2f"
          % (ratios["cpu_agent_over_limit"], ratios["cpu_agent_over_python"], ratios["rss_agent_over_python"]))
    if st:
        print("static agent: CPU/event agent/limit %.2f, agent/python %.2f; peak RSS agent/python %.2f"
              % (ratios["cpu_agent_static_over_limit"], ratios["cpu_agent_static_over_python"],
                 ratios["rss_agent_static_over_python"]))
    print("latency at %d events/s (sync=group): p50 %.2f ms, p99 %.2f ms, max %.2f ms"
          % (lat["rate"], lat["p50_ms"], lat["p99_ms"], lat["max_ms"]))
    print("idle CPU over %d s: %.3f %% of one core" % (a.idle_s, lat["idle_cpu_pct"]))
    if rss:
        print("RSS (KiB) after N events: " + ", ".join("%d: %d" % s for s in rss))
    print("\nresults: bench/results/latest.json")


if __name__ == "__main__":
    main()
