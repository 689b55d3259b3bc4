#!/usr/bin/python3
"""make demo: a local broker, a stand-in Zeebe gateway (TLS + token check), an
HTTPS token endpoint, the agent with conf/demo.ini, and sample device events.
Every PublishMessage the gateway receives is printed as it arrives."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from peers.certs import make_certs  # noqa: E402
from peers.gateway import StandInGateway  # noqa: E402
from peers.token_server import TokenServer  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(tmp):
    port = free_port()
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                f"persistence true\npersistence_location {tmp}/\n")
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("demo: mosquitto did not start")


def wait_for_line(path, text, proc, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            break
        with open(path) as f:
            if text in f.read():
                return
        time.sleep(0.1)
    with open(path) as f:
        sys.stderr.write(f.read())
    raise SystemExit("demo: the agent did not become ready")


SAMPLES = [
    ("plant/hamburg/pump/7/telemetry", {"serial": "P-0007", "rpm": 1480, "temp": 61.5}),
    ("plant/hamburg/pump/9/telemetry", {"serial": "P-0009", "rpm": 0, "fault": "dry-run"}),
    ("plant/bremen/door/3", {"state": "open", "seq": 41}),
    ("plant/bremen/door/3", {"state": "closed", "seq": 42}),
    ("plant/bremen/door/3", {"state": "open", "seq": 43}),     # same state again: a new event
    ("plant/hamburg/pump/7/telemetry", {"serial": "P-0007", "rpm": 1495, "temp": 63.0}),
    # No "serial": the correlation key cannot be resolved -> dead letter.
    ("plant/hamburg/pump/8/telemetry", {"rpm": 12}),
]


def read_status(port, topic, timeout=10):
    """The retained document on TOPIC, as text."""
    got = threading.Event()
    doc = []
    c = mqtt.Client(client_id="demo-status-reader")
    c.on_connect = lambda cl, u, f, rc: cl.subscribe(topic, qos=1)
    c.on_message = lambda cl, u, m: (doc.append(m.payload.decode()), got.set())
    c.connect("127.0.0.1", port)
    c.loop_start()
    got.wait(timeout)
    c.disconnect()
    c.loop_stop()
    return doc[0] if doc else "(nothing retained)"


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def show_ops(mqtt_port, metrics_port):
    topic = "mqtt2zeebe/mqtt2zeebe-demo/status"
    print(f"\nstatus topic {topic} (retained):\n  {read_status(mqtt_port, topic)}")
    st, body = http_get(metrics_port, "/metrics")
    print(f"\nGET http://127.0.0.1:{metrics_port}/metrics -> {st} (samples, without # HELP/# TYPE):")
    for line in body.splitlines():
        if line and not line.startswith("#") and "_bucket" not in line:
            print("  " + line)
    st, body = http_get(metrics_port, "/healthz")
    print(f"\nGET http://127.0.0.1:{metrics_port}/healthz -> {st} {body.strip()}")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "mqtt2zeebe")
    tmp = tempfile.mkdtemp(prefix="m2z-demo-")
    certs = make_certs(os.path.join(tmp, "certs"))
    broker, mqtt_port = start_broker(tmp)
    tokens = gateway = None
    try:
        tokens = TokenServer(cert=certs["server_cert"], key=certs["server_key"],
                             client_id="demo-client", client_secret="demo-secret",
                             audience="zeebe.demo", expires_in=300)
        tokens.start()
        gateway = StandInGateway(tls=(certs["server_cert"], certs["server_key"]),
                                 token_check=tokens.is_valid)
        gateway.start()
        return run_agent(binary, tmp, certs, mqtt_port, tokens, gateway)
    finally:
        if gateway:
            gateway.stop()
        if tokens:
            tokens.stop()
        broker.terminate()
        broker.wait()


def run_valve_command(gateway, mqtt_port):
    """A job of a service task becomes an MQTT command; the valve answers."""
    print("\ndemo: a process reaches a service task of type 'valve-command'")
    valve = mqtt.Client(client_id="demo-valve")

    def on_message(c, u, m):
        print(f"  valve <- {m.topic}  {m.payload.decode()}")
        reply = m.topic.replace("/cmd/", "/reply/")
        body = json.dumps({"status": "ok", "position": json.loads(m.payload)["position"]})
        print(f"  valve -> {reply}  {body}")
        c.publish(reply, body, qos=1)
    valve.on_message = on_message
    valve.connect("127.0.0.1", mqtt_port)
    valve.subscribe("plant/+/valve/+/cmd/+", qos=1)
    valve.loop_start()
    time.sleep(0.3)
    key = gateway.create_job("valve-command", {"site": "hamburg", "valve": "v3", "position": 40},
                             headers={"command": "open"})
    job = gateway.wait_job(key, lambda j: j["state"] != "ACTIVATABLE" and j["state"] != "ACTIVATED",
                           timeout=20)
    print(f"  gateway: job {key} {job['state']} with variables {json.dumps(job['variables'])}")
    valve.loop_stop()


def run_agent(binary, tmp, certs, mqtt_port, tokens, gateway):
    metrics_port = free_port()
    with open(os.path.join(ROOT, "conf", "demo.ini")) as f:
        ini = f.read()
    for k, v in {"@GATEWAY_PORT@": gateway.port, "@TOKEN_PORT@": tokens.port,
                 "@MQTT_PORT@": mqtt_port, "@CA@": certs["ca"],
                 "@SPOOL@": os.path.join(tmp, "spool"), "@METRICS_PORT@": metrics_port}.items():
        ini = ini.replace(k, str(v))
    conf = os.path.join(tmp, "demo.ini")
    with open(conf, "w") as f:
        f.write(ini)
    log = os.path.join(tmp, "agent.log")
    print(f"demo: broker 127.0.0.1:{mqtt_port}, gateway localhost:{gateway.port} (TLS, "
          f"token required), token endpoint {tokens.url}, work dir {tmp}")
    agent = subprocess.Popen([binary, "-c", conf], stderr=open(log, "w"))
    try:
        wait_for_line(log, "subscribed to", agent)
        print("demo: agent ready; publishing sample device events at QoS 1\n")
        pub = mqtt.Client(client_id="demo-device")
        pub.connect("127.0.0.1", mqtt_port)
        pub.loop_start()
        for topic, payload in SAMPLES:
            body = payload if isinstance(payload, str) else json.dumps(payload)
            pub.publish(topic, body, qos=1).wait_for_publish()
            print(f"  device -> {topic}  {body}")
        pub.loop_stop()
        expected = len(SAMPLES) - 1
        gateway.wait_for(expected, timeout=30)
        print("\ngateway received:")
        for r in gateway.requests():
            auth = r["metadata"].get("authorization", "")
            print(f"  PublishMessage name={r['name']!r} correlationKey={r['correlationKey']!r} "
                  f"messageId={r['messageId']!r} ttl={r['timeToLive']} "
                  f"variables={r['variables']} token={'Bearer ...' if auth.startswith('Bearer ') else 'MISSING'}"
                  f" -> {r['status']}")
        dead = os.path.join(tmp, "spool", "dead-letters.jsonl")
        time.sleep(0.5)
        if os.path.exists(dead):
            print("\ndead letters (in", dead + "):")
            with open(dead) as f:
                for line in f:
                    d = json.loads(line)
                    print(f"  {d['topic']}: {d['status']}: {d['reason']}")
        show_ops(mqtt_port, metrics_port)
        run_valve_command(gateway, mqtt_port)
        agent.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
    finally:
        agent.send_signal(signal.SIGTERM)
        rc = agent.wait(timeout=15)
    print("\nafter the stop, the status topic holds:\n  "
          + read_status(mqtt_port, "mqtt2zeebe/mqtt2zeebe-demo/status"))
    print("\nagent log:")
    with open(log) as f:
        sys.stdout.write(f.read())
    print(f"demo: agent exited with {rc}; everything is in {tmp}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
