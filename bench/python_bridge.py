#!/usr/bin/python3
"""The peer to beat: an MQTT -> Zeebe bridge in Python, written the way a
capable user would (the way Camunda's guide generates a Python client):
paho-mqtt subscriber at QoS 1 with a persistent session, grpcio
PublishMessage futures with a bounded window, an OAuth client-credentials
token fetched over HTTPS, cached and refreshed ahead of expiry, attached by
call credentials. Same message as the agent's bench route: name
"device-event", correlation key from the payload's "key", a messageId
derived from topic and payload, TTL 1 h, the payload as variables.

Usage: python_bridge.py --mqtt-port P --topic F --address H:P --ca FILE
         --token-url URL --client-id ID --client-secret S --audience A
         [--window 64] [--proto proto/gateway.proto]
"""
import argparse
import hashlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import grpc
import paho.mqtt.client as mqtt


def load_messages(proto):
    out = tempfile.mkdtemp(prefix="bridge-pb-")
    subprocess.run(["protoc", "--proto_path=" + os.path.dirname(os.path.abspath(proto)),
                    "--python_out=" + out, os.path.basename(proto)], check=True)
    sys.path.insert(0, out)
    import gateway_pb2  # noqa: E402
    return gateway_pb2


class Token(grpc.AuthMetadataPlugin):
    def __init__(self, url, client_id, secret, audience, ca):
        self.url, self.ca = url, ca
        self.form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                                            "client_secret": secret, "audience": audience}).encode()
        self.lock = threading.Lock()
        self.token, self.expires = None, 0.0

    def get(self):
        with self.lock:
            if self.token is None or time.time() > self.expires - 30:
                ctx = ssl.create_default_context(cafile=self.ca)
                req = urllib.request.Request(self.url, data=self.form, headers={
                    "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
                with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                    body = json.load(r)
                self.token = body["access_token"]
                self.expires = time.time() + float(body.get("expires_in", 3600))
            return self.token

    def __call__(self, context, callback):
        callback((("authorization", "Bearer " + self.get()),), None)


def main():
    ap = argparse.ArgumentParser()
    for a in ("--mqtt-port", "--topic", "--address", "--ca", "--token-url", "--client-id",
              "--client-secret", "--audience"):
        ap.add_argument(a, required=True)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--proto", default=os.path.join(os.path.dirname(__file__), "..", "proto", "gateway.proto"))
    a = ap.parse_args()
    pb = load_messages(a.proto)
    token = Token(a.token_url, a.client_id, a.client_secret, a.audience, a.ca)
    token.get()
    with open(a.ca, "rb") as f:
        creds = grpc.composite_channel_credentials(grpc.ssl_channel_credentials(f.read()),
                                                   grpc.metadata_call_credentials(token))
    channel = grpc.secure_channel(a.address, creds, options=[("grpc.keepalive_time_ms", 45000)])
    publish = channel.unary_unary("/gateway_protocol.Gateway/PublishMessage",
                                  request_serializer=pb.PublishMessageRequest.SerializeToString,
                                  response_deserializer=pb.PublishMessageResponse.FromString)
    window = threading.BoundedSemaphore(a.window)
    failed = []

    def done(fut):
        window.release()
        if fut.exception() is not None and fut.code() != grpc.StatusCode.ALREADY_EXISTS:
            failed.append(fut.code())

    def on_message(client, userdata, msg):
        doc = json.loads(msg.payload)
        req = pb.PublishMessageRequest(
            name="device-event", correlationKey=str(doc["key"]),
            messageId=hashlib.sha256(msg.topic.encode() + b"\0" + msg.payload).hexdigest()[:32],
            timeToLive=3600000, variables=msg.payload.decode())
        window.acquire()          # bounded in-flight window; holds the MQTT thread
        publish.future(req, timeout=10).add_done_callback(done)

    client = mqtt.Client(client_id="python-bridge", clean_session=False)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(a.topic, qos=1)
    client.on_subscribe = lambda *_: print("subscribed", flush=True)
    client.connect("127.0.0.1", int(a.mqtt_port))
    client.loop_forever()


if __name__ == "__main__":
    main()
