"""Dead letters: republished to MQTT when asked, and replayed through the
routes after the configuration is fixed; --check-connection."""
import json
import threading

import paho.mqtt.client as mqtt

import util

ROUTE = {"pump": {"topic": "plant/+/pump/+", "message_name": "pump-event",
                  "correlation_key": "{/serial}"}}
FIXED = {"pump": {"topic": "plant/+/pump/+", "message_name": "pump-event",
                  "correlation_key": "{/serial|no-serial}"}}


def _subscribe(port, topic):
    got, ready = [], threading.Event()
    c = mqtt.Client(client_id="dl-listener")
    c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda *_: ready.set()
    c.on_message = lambda cl, ud, m: got.append(m.payload.decode())
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10)
    return c, got


def test_dead_letter_republished_then_replayed(agent, broker, gateway, publish):
    listener, lines = _subscribe(broker.port, "m2z/dead")
    try:
        a = agent(routes=ROUTE, sections={"forward": {"dead_letter_topic": "m2z/dead"}})
        publish("plant/x/pump/7", json.dumps({"rpm": 5}))          # no serial: dead letter
        publish("plant/x/pump/8", json.dumps({"serial": "S8"}))    # fine
        gateway.wait_for(1, status="OK")
        util.wait_until(lambda: len(a.dead_letters()) == 1 and lines, what="dead letter + republish")
        dl = a.dead_letters()[0]
        assert dl["topic"] == "plant/x/pump/7" and dl["status"] == "RENDER"
        assert "/serial" in dl["reason"]
        assert json.loads(lines[0])["topic"] == "plant/x/pump/7"
    finally:
        listener.loop_stop()
        listener.disconnect()

    # Fix the route (a default for the key), replay with the agent stopped.
    a.stop()
    a.reconfigure(routes=FIXED)
    r = util.run_cli(["--replay-dead-letters", a.dead_letter_path, "-c", a.conf_path])
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "replayed 1 event(s)" in out and "0 still failing" in out
    a.start()
    rs = gateway.wait_for(2, status="OK")
    assert sorted(util.field(x, "correlationKey") for x in rs) == ["S8", "no-serial"]


def test_replay_reports_lines_that_still_fail(agent, gateway, publish):
    a = agent(routes=ROUTE)
    publish("plant/x/pump/7", "not json")
    util.wait_until(lambda: len(a.dead_letters()) == 1, what="dead letter")
    a.stop()
    r = util.run_cli(["--replay-dead-letters", a.dead_letter_path, "-c", a.conf_path])
    assert r.returncode == 1
    assert "0 event(s)" in r.stdout.decode() and "1 still failing" in r.stdout.decode()
    with open(a.dead_letter_path + ".failed") as f:
        assert json.loads(f.readline())["topic"] == "plant/x/pump/7"


def test_check_connection(agent, gateway, token_server, certs):
    a = agent(start=False)
    r = util.run_cli(["--check-connection", "-c", a.conf_path])
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "token: ok" in out and "OK" in out and "1 leader(s), 1 healthy" in out
    assert util.token_fetches(token_server) >= 1

    bad = agent(start=False, zeebe_ca=certs.other_ca)
    r = util.run_cli(["--check-connection", "-c", bad.conf_path])
    assert r.returncode == 1
    assert "UNAVAILABLE" in r.stdout.decode()


def test_replay_keeps_unreplayable_lines_and_refuses_non_files(agent, tmp_path):
    a = agent(routes=ROUTE, start=False)
    dl = tmp_path / "dl.jsonl"
    good_dead = json.dumps({"topic": "plant/x/pump/1", "payload": json.dumps({"rpm": 1})})  # no serial
    lines = [
        '{"topic": "plant/x/pump/1", "payl',                                          # truncated
        json.dumps({"topic": "plant/x/pump/2", "payload_omitted": True, "payload_size": 9}),
        json.dumps({"topic": "plant/x/pump/3", "payload_base64": "!!not base64!!"}),
        good_dead,
    ]
    dl.write_text("\n".join(lines) + "\n")
    r = util.run_cli(["--replay-dead-letters", str(dl), "-c", a.conf_path])
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 1, out + err
    assert "0 event(s)" in out and "4 still failing" in out
    failed = (tmp_path / "dl.jsonl.failed").read_text().splitlines()
    assert len(failed) == 4
    assert failed[:3] == lines[:3]                          # verbatim
    assert json.loads(failed[3])["status"] == "RENDER"      # ingest's own dead letter
    assert "dl.jsonl:1: not a JSON object" in err
    assert "dl.jsonl:2: payload_omitted" in err
    assert "dl.jsonl:3: payload_base64 is not valid base64" in err

    for bad in (str(tmp_path), "/dev/null"):
        r = util.run_cli(["--replay-dead-letters", bad, "-c", a.conf_path])
        assert r.returncode == 2
        assert "not a regular file" in r.stderr.decode()
