"""The agent's own publications (dead letters republished to MQTT, the
retained status document) are never routed back into Zeebe, and retained
device messages are skipped unless a route asks for them."""
import json
import time

import util

WIDE = {"all": {"topic": "plant/#", "message_name": "ev", "correlation_key": "{/serial}"}}


def _stays(pred, seconds):
    """PRED holds for SECONDS (checked every 100 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert pred()
        time.sleep(0.1)


def test_dead_letter_topic_under_a_route_is_not_reingested(agent, publish):
    a = agent(routes=WIDE, sections={"forward": {"dead_letter_topic": "plant/dead-letters"}})
    assert a.wait_log(r"\[route all\] topic plant/# matches \[forward\] dead_letter_topic", run_only=False)
    publish("plant/line1/pump", json.dumps({"rpm": 5}))   # no serial: one dead letter
    util.wait_until(lambda: len(a.dead_letters()) == 1, what="first dead letter")
    a.wait_stats(lambda s: s["own"] >= 1)                   # our republish came back: skipped
    _stays(lambda: len(a.dead_letters()) == 1, 3.0)
    assert a.dead_letters()[0]["topic"] == "plant/line1/pump"
    assert "skipped our own publication on plant/dead-letters" in a.log()


def test_status_document_is_not_forwarded_by_a_hash_route(agent, gateway, publish):
    routes = {"all": {"topic": "#", "message_name": "ev", "correlation_key": "{/serial|none}"}}
    a = agent(routes=routes, sections={"status": {"topic": "m2z/status"}})
    publish("dev/1", json.dumps({"serial": "S1"}))
    gateway.wait_for(1, status="OK")
    s = a.wait_stats(lambda s: s["own"] >= 1)
    assert s["published"] == 1
    assert all(util.field(r, "correlationKey") == "S1" for r in util.gw_requests(gateway))
    r = util.run_cli(["--check", "-c", a.conf_path])
    assert "matches the [status] topic m2z/status" in (r.stdout + r.stderr).decode()


def _retained_case(agent, broker, gateway, publish, mode):
    routes = {"dev": {"topic": "dev/+/state", "message_name": "state",
                      "correlation_key": "{2}", "retained": mode}}
    publish("dev/7/state", json.dumps({"on": True}), retain=True)
    a = agent(routes=routes)
    a.restart()
    subs = a.run_log().count("subscribed to")
    broker.restart()
    util.wait_until(lambda: a.run_log().count("subscribed to") > subs, timeout=30,
                    what="resubscribed after the broker restart")
    publish.reconnect()
    publish("dev/8/state", json.dumps({"on": False}))            # live: always forwarded
    gateway.wait_for(1, status="OK")
    return a


def test_retained_message_skipped_by_default(agent, broker, gateway, publish):
    a = _retained_case(agent, broker, gateway, publish, "skip")
    s = a.wait_stats(lambda s: s["retained_skipped"] >= 1 and s["published"] >= 1)
    assert [util.field(r, "correlationKey") for r in util.gw_attempts(gateway)] == ["8"]
    assert s["spooled"] == 1


def test_retained_message_forwarded_when_asked(agent, broker, gateway, publish):
    a = _retained_case(agent, broker, gateway, publish, "forward")
    util.wait_until(lambda: "7" in [util.field(r, "correlationKey") for r in util.gw_requests(gateway)],
                    what="retained event forwarded")
    s = a.wait_stats(lambda s: s["published"] >= 2 and s["duplicates"] >= 1)
    assert s["published"] == 2 and s["retained_skipped"] == 0, s
    # 7 came again on each (re)subscribe; Zeebe saw it once (same message id)
    assert [util.field(r, "correlationKey") for r in util.gw_requests(gateway)].count("7") == 1
