"""MQTT over TLS to the broker, with a client certificate (mutual TLS) and
a broker password from the environment."""
import json
import os
import subprocess

import pytest

import util


@pytest.fixture
def tls_broker(tmp_path, certs):
    """mosquitto with a plain listener (for the test's publisher) and a TLS
    listener that requires a client certificate signed by the test CA."""
    yield from _tls_broker(tmp_path, certs, certs.server_cert, certs.server_key)


@pytest.fixture
def wrong_name_broker(tmp_path, certs):
    """As tls_broker, its certificate (test CA) naming not-localhost.example."""
    yield from _tls_broker(tmp_path, certs, certs.wrong_name_cert, certs.wrong_name_key)


def _tls_broker(tmp_path, certs, cert, key):
    plain, tls = util.free_port(), util.free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join([
        "per_listener_settings false",
        "allow_anonymous true",
        "user root" if os.geteuid() == 0 else "",
        "listener %d 127.0.0.1" % plain,
        "listener %d 127.0.0.1" % tls,
        "cafile %s" % certs.ca,
        "certfile %s" % cert,
        "keyfile %s" % key,
        "require_certificate true",
        "log_dest stderr",
        "connection_messages true",
    ]) + "\n")
    proc = subprocess.Popen([util.MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "mosquitto.log", "wb"))
    util.wait_until(lambda: util.port_accepts(plain) and util.port_accepts(tls), 10,
                    what="TLS broker")

    class B:
        pass
    b = B()
    b.port, b.tls_port = plain, tls
    b.log_path = str(tmp_path / "mosquitto.log")
    yield b
    proc.terminate()
    proc.wait(10)


def _mqtt(tls_broker, certs, **over):
    m = {"host": "localhost", "port": tls_broker.tls_port, "tls": "true", "ca_file": certs.ca,
         "cert_file": certs["client_cert"], "key_file": certs["client_key"]}
    m.update(over)
    return {"mqtt": m}


def test_mutual_tls_to_the_broker(agent, tls_broker, gateway, certs):
    a = agent(broker=None, sections=_mqtt(tls_broker, certs, username="edge-7"),
              env={"M2Z_MQTT_PASSWORD": util.MQTT_PASSWORD})
    pub = util.Publisher(tls_broker.port)
    try:
        pub("m2z/site/tls1/event", json.dumps({"x": 1}))
    finally:
        pub.close()
    (r,) = gateway.wait_for(1, status="OK")
    assert r["correlationKey"] == "tls1"
    assert util.MQTT_PASSWORD not in a.log()
    assert "edge-7" in open(tls_broker.log_path).read()   # the broker saw our user name


def test_broker_certificate_must_verify(agent, tls_broker, gateway, certs):
    a = agent(broker=None, sections=_mqtt(tls_broker, certs, ca_file=certs.other_ca), wait_ready=False)
    util.wait_until(lambda: "cannot connect" in a.log() or "lost" in a.log() or "TLS" in a.log()
                    or "certificate" in a.log(), 15, what="a TLS failure in the log")
    assert "subscribed to" not in a.log()


def test_tls_insecure_skips_only_the_name_check(agent, wrong_name_broker, gateway, certs):
    """tls_insecure accepts a certificate for another name (the chain is
    still verified: see the next test); without it the name must match."""
    strict = agent(broker=None, sections=_mqtt(wrong_name_broker, certs), wait_ready=False)
    a = agent(broker=None, sections=_mqtt(wrong_name_broker, certs, tls_insecure="true"))
    pub = util.Publisher(wrong_name_broker.port)
    try:
        pub("m2z/site/tls2/event", json.dumps({"x": 2}))
    finally:
        pub.close()
    (r,) = gateway.wait_for(1, status="OK")
    assert r["correlationKey"] == "tls2"
    util.wait_until(lambda: "certificate verification failed" in strict.log(), 15,
                    what="the strict agent refusing the name")
    assert "subscribed to" not in strict.log()
    assert a.running()


def test_tls_insecure_still_verifies_the_chain(agent, wrong_name_broker, gateway, certs):
    a = agent(broker=None, sections=_mqtt(wrong_name_broker, certs, ca_file=certs.other_ca,
                                          tls_insecure="true"), wait_ready=False)
    util.wait_until(lambda: "certificate verification failed" in a.log(), 15,
                    what="a chain failure in the log")
    assert "subscribed to" not in a.log()
