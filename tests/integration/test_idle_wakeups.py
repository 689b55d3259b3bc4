"""Issue 12's idle sleeps under attack: an idle forwarder sleeps without a
timeout, an idle job worker asks its timers only every 30 s, gRPC's backup
poller is off. Events that come after an idle spell (with the gateway
restarted meanwhile, or a SIGHUP) must each be published and acknowledged
at once, not at the next event; a worker that was idle must still time a
device's reply out on time and stop at once. Real broker, stand-in gateway,
token endpoint and the real binary.

The sleeps below make the agent idle on purpose (longer than the 2 s after
which the forwarder sleeps untimed); every check waits for a condition with
a deadline."""

import signal
import time

import util
from test_worker import worker_ini

ROUTE = {"ev": {"topic": "dev/+/ev", "message_name": "device-event",
                "correlation_key": "{/key}"}}
IDLE_S = 2.6        # > the forwarder's IDLE_AFTER_MS


def _restart(gw):
    """Stop GW and serve again on the same port (new connections only)."""
    port = gw.port
    gw.stop()
    gw._want_port = port
    gw.start()
    assert gw.port == port


def test_events_after_idle_spells_are_acked_at_once(agent, gateway, publish):
    """Each event comes to a sleeping forwarder: the first as it is, the
    second after the gateway went away and came back while idle, the third
    after a SIGHUP. Each one is at the gateway and acknowledged in the spool
    (backlog 0, published counted) well before the next one: a lost wake-up
    would leave it unacked until the next event."""
    a = agent(routes=ROUTE)
    for i in range(3):
        time.sleep(IDLE_S)
        if i == 1:
            _restart(gateway)
            time.sleep(IDLE_S)
        if i == 2:
            a.send_signal(signal.SIGHUP)
            a.wait_log(r"\[reload\] reloaded ", timeout=10)
            time.sleep(IDLE_S)
        t0 = time.monotonic()
        publish("dev/d%d/ev" % i, {"seq": i, "key": "k%d" % i})
        s = a.wait_stats(lambda s: s["published"] == i + 1 and s["backlog"] == 0, timeout=15,
                         interval=0.05)
        took = time.monotonic() - t0
        assert s["retries"] == 0 or i == 1, s
        # The loop's longest own wait would be its 2 s turn; sleeping untimed
        # with a lost wake-up it would never come.
        assert took < 8.0, "event %d acknowledged %.1f s after it was sent" % (i, took)
    ok = [util.variables(r)["seq"] for r in gateway.requests()]
    assert sorted(ok) == [0, 1, 2], ok


def test_idle_worker_times_a_reply_out_on_time_and_stops_at_once(agent, gateway, broker):
    """A worker polling with a long poll_timeout asks its timers rarely when
    idle; once a job is in hand its reply timeout must still fire on time
    (not at the next 30 s tick), and a SIGTERM during the next long poll
    ends the agent at once."""
    from test_worker import Device
    dev = Device(broker.port, "plant/#")
    try:
        a = agent(extra_ini=worker_ini(mode="request_reply", poll_timeout="60s", reply_timeout="1s",
                                       reply_topic="plant/{/variables/deviceId}/reply/{/key}",
                                       retry_backoff="30s"))
        time.sleep(IDLE_S)                  # the poll waits, its tick at 30 s
        key = gateway.create_job("valve-command", {"deviceId": "valve9"}, retries=3)
        dev.wait(1)
        t0 = time.monotonic()
        gateway.wait_job(key, lambda j: j["history"][-1:] == ["FailJob"], timeout=20)
        took = time.monotonic() - t0
        assert took < 10.0, "reply timeout (1 s) fired after %.1f s" % took
        # idle again, in a 60 s poll: a stop must not wait for it
        time.sleep(IDLE_S)
        t0 = time.monotonic()
        assert a.stop() == 0
        took = time.monotonic() - t0
        assert took < 5.0, "SIGTERM took %.1f s with an idle 60 s poll" % took
    finally:
        dev.close()
