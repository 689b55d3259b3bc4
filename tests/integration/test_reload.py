"""SIGHUP reloads the configuration: routes (new filters subscribed, removed
ones unsubscribed), log level, stats interval, retry settings. A broken file
is refused with FILE:LINE and the old configuration keeps running;
connection settings wait for a restart (WARN). Real broker, stand-in
gateway (TLS, token checks), HTTPS token endpoint, the real binary."""

import collections
import json
import re
import signal
import threading

import util

ROUTE_A = ("ev", {"topic": "dev/+/ev", "message_name": "device-event",
                  "correlation_key": "{/key}"})
ROUTE_B = ("late", {"topic": "late/+/ev", "message_name": "late-event",
                    "correlation_key": "{/key}"})


def events(prefix, n, start=0, keys=8):
    return [("%s/d%d/ev" % (prefix, i % keys), {"seq": i, "key": "k%d" % (i % keys), "pad": "x" * 40})
            for i in range(start, start + n)]


def by_seq(gw, name):
    out = collections.defaultdict(list)
    for r in gw.requests(status=None):
        if util.field(r, "name") == name:
            out[json.loads(util.field(r, "variables"))["seq"]].append(util.field(r, "status"))
    return out


def wait_ok(gw, name, seqs, timeout=120):
    seqs = set(seqs)
    util.wait_until(lambda: seqs <= {s for s, st in by_seq(gw, name).items() if "OK" in st},
                    timeout, what="%d %s events answered OK" % (len(seqs), name))


def exactly_once(gw, name, seqs):
    """Every seq answered OK once; any other copy is a counted duplicate."""
    got = by_seq(gw, name)
    assert set(got) == set(seqs), "unexpected or missing: %s" % sorted(set(got) ^ set(seqs))[:20]
    for s, st in got.items():
        assert st.count("OK") == 1, (s, st)
        assert all(x in ("OK", "ALREADY_EXISTS") for x in st), (s, st)


def hup(a, count_before):
    """SIGHUP and wait for the reload's outcome line (reloaded or refused)."""
    a.send_signal(signal.SIGHUP)
    rx = re.compile(r"\[reload\] (reloaded|.*reload refused)")
    util.wait_until(lambda: len(rx.findall(a.run_log())) > count_before, 20,
                    what="reload outcome line")
    return rx.findall(a.run_log())[-1]


def subscribed_lines(a):
    return len(re.findall(r"\[mqtt\] subscribed to \d+ filter", a.run_log()))


def test_reload_adds_route_during_stream(agent, gateway, publish):
    a = agent(routes=[ROUTE_A], log_level="info")
    n = 5000
    msgs = events("dev", n)
    half, reloaded = threading.Event(), threading.Event()
    err = []

    def stream():
        # Half, then 2,000 more while SIGHUP lands, then (once the reload
        # is done, so the stream surely spans it) the last 500.
        try:
            publish.many(msgs[: n // 2], timeout=180)
            half.set()
            publish.many(msgs[n // 2: n - 500], timeout=180)
            if not reloaded.wait(60):
                raise AssertionError("no reload within 60 s")
            publish.many(msgs[n - 500:], timeout=180)
        except Exception as e:  # noqa: BLE001 - reported below
            err.append(e)
            half.set()
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    assert half.wait(180), "first half not published"
    # The second half is streaming while the file changes and SIGHUP lands.
    a.reconfigure(routes=[ROUTE_A, ROUTE_B])
    subs = subscribed_lines(a)
    assert hup(a, 0) == "reloaded", a.tail()
    reloaded.set()
    a.wait_log(r"\[reload\] reloaded .*: 2 route\(s\)")
    a.wait_log(r"subscribing to 'late/\+/ev' \(QoS 1\)")
    util.wait_until(lambda: subscribed_lines(a) > subs, 20, what="SUBACK for the new filter")
    late = events("late", 200, start=100000)
    publish.many(late)
    t.join(240)
    assert not t.is_alive() and not err, err
    wait_ok(gateway, "device-event", range(n))
    wait_ok(gateway, "late-event", range(100000, 100200))
    exactly_once(gateway, "device-event", range(n))
    exactly_once(gateway, "late-event", range(100000, 100200))
    s = a.wait_stats(lambda s: s["backlog"] == 0)
    assert s["unrouted"] == 0 and s["dead_lettered"] == 0, s
    assert s["received"] == n + 200, s
    # SIGHUP no longer prints the counters; only the SIGUSR1 above did.
    assert "[stats]" not in a.run_log().split("SIGHUP: reading")[1].split("[reload] reloaded")[0]


def test_broken_file_is_refused_and_old_routes_keep_working(agent, gateway, publish):
    a = agent(routes=[ROUTE_A])
    good = a.config_text
    stats_lines = a.run_log().count("[stats]")
    a.reconfigure(routes=[ROUTE_A, ROUTE_B], extra_ini="[log]\nlevel = loud\n")
    text = open(a.conf_path).read()
    line = [i for i, l in enumerate(text.splitlines(), 1) if "level = loud" in l][0]
    assert hup(a, 0).endswith("reload refused")
    m = a.wait_log(r"ERROR \[reload\] (\S+):(\d+): (.*)reload refused")
    assert (m.group(1), int(m.group(2))) == (a.conf_path, line), m.group(0)
    # A template error is a file:line error too (found by compiling the routes).
    bad_b = (ROUTE_B[0], dict(ROUTE_B[1], correlation_key="{/key"))
    a.reconfigure(routes=[ROUTE_A, bad_b])
    text = open(a.conf_path).read()
    line = [i for i, l in enumerate(text.splitlines(), 1) if "{/key\n" in l + "\n"][0]
    assert hup(a, 1).endswith("reload refused")
    assert re.search(r"ERROR \[reload\] %s:%d: .*correlation_key" % (re.escape(a.conf_path), line),
                     a.run_log()), a.tail()
    assert "subscribing to" not in a.run_log()
    assert a.run_log().count("[stats]") == stats_lines, "SIGHUP printed the counters"
    # The old routes still forward.
    publish.many(events("dev", 20))
    wait_ok(gateway, "device-event", range(20))
    exactly_once(gateway, "device-event", range(20))
    # Fixed file: applied.
    a.config_text = good
    open(a.conf_path, "w").write(good)
    assert hup(a, 2) == "reloaded"


def test_reload_changes_log_level_and_removes_route(agent, gateway, publish):
    a = agent(routes=[ROUTE_A], log_level="info")
    gateway.fail_next("ABORTED")
    publish.many(events("dev", 1))
    wait_ok(gateway, "device-event", [0])
    assert " DEBUG " not in a.run_log()
    a.reconfigure(routes=[ROUTE_B], sections={"log": {"level": "debug"},
                                              "zeebe": {"request_timeout": "7s"},
                                              "forward": {"retry_initial": "50ms"}})
    subs = subscribed_lines(a)
    assert hup(a, 0) == "reloaded"
    # A connection setting waits for a restart; the rest is applied.
    a.wait_log(r"WARN  \[reload\] restart to apply: zeebe.request_timeout changed")
    assert "forward.retry_initial changed" not in a.run_log()
    a.wait_log(r"unsubscribing from 'dev/\+/ev'")
    util.wait_until(lambda: subscribed_lines(a) > subs, 20, what="SUBACK for late/+/ev")
    gateway.fail_next("ABORTED")
    publish.many(events("late", 1, start=7))
    wait_ok(gateway, "late-event", [7])
    a.wait_log(r"DEBUG \[forward\] ABORTED for message")
    # The removed route's filter is unsubscribed: its events no longer arrive.
    before = a.stats()["received"]
    publish.many(events("dev", 3, start=50) + events("late", 1, start=8))
    wait_ok(gateway, "late-event", [8])
    s = a.wait_stats(lambda s: s["backlog"] == 0)
    assert s["received"] == before + 1 and s["unrouted"] == 0, s
