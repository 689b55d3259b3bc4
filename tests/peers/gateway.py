#!/usr/bin/python3
"""Stand-in Zeebe gateway for tests and the demo.

A real gRPC server (Debian's grpcio) speaking gateway_protocol.Gateway,
with message classes generated at start-up by protoc from the OFFICIAL 8.4
proto when ../shared/reference/zeebe-gateway-8.4.proto is there (which proves
our proto is wire-compatible), else from our proto/gateway.proto.

It records every request with its metadata, behaves like Zeebe where the
agent depends on it (ALREADY_EXISTS for a repeated messageId while the first
is buffered, variables must be a JSON object, tenant rules, bearer token
check with Zeebe's texts), and fails on demand (fail_next, fail_every,
set_unavailable, delay_ms, reject_tokens, echo_auth).

    gw.reject_tokens = True   every call UNAUTHENTICATED, whatever the token
    gw.echo_auth = True       UNAUTHENTICATED details echo the Authorization
                              header, as some identity providers' errors do

    gw = StandInGateway(tls=(cert, key), token_check=ts.is_valid); gw.start()
    gw.wait_for(10); gw.requests(); gw.fail_next("UNAVAILABLE", 3); gw.stop()

CLI (demo): gateway.py --port N [--tls-cert C --tls-key K] [--proto P]
"""
import argparse
import base64
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OFFICIAL = os.path.join(os.path.dirname(REPO), "shared", "reference", "zeebe-gateway-8.4.proto")
OURS = os.path.join(REPO, "proto", "gateway.proto")

_modules = {}
_modules_lock = threading.Lock()


def default_proto():
    return OFFICIAL if os.path.exists(OFFICIAL) else OURS


def load_proto(path):
    """The generated message module for PATH (protoc --python_out), cached."""
    path = os.path.abspath(path)
    with _modules_lock:
        if path in _modules:
            return _modules[path]
        out = tempfile.mkdtemp(prefix="m2z-pb-")
        # Under a plain name: protoc turns "zeebe-gateway-8.4" into a path.
        with open(path, "rb") as src, open(os.path.join(out, "zgw.proto"), "wb") as dst:
            dst.write(src.read())
        subprocess.run(["protoc", "--proto_path=" + out, "--python_out=" + out, "zgw.proto"],
                       check=True)
        spec = importlib.util.spec_from_file_location("m2z_zgw_pb2_%d" % len(_modules),
                                                      os.path.join(out, "zgw_pb2.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _modules[path] = mod
        return mod


def _code(c):
    if isinstance(c, grpc.StatusCode):
        return c
    return grpc.StatusCode[str(c).upper()]


class StandInGateway:
    def __init__(self, port=0, tls=None, proto=None, token_check=None, delay_ms=0,
                 max_workers=128, multi_tenancy=False, host="localhost", basic_auth=None):
        self.proto_path = proto or default_proto()
        self.pb = load_proto(self.proto_path)
        self.tls = tls
        self.token_check = token_check
        self.basic_auth = basic_auth  # (user, password): Camunda 8.8 basic authentication
        self.delay_ms = delay_ms
        self.multi_tenancy = multi_tenancy
        self.host = host
        self._want_port = port
        self.port = None
        self._lock = threading.Condition()
        self._records = []
        self._buffered = {}          # (name, key, id, tenant) -> expiry (monotonic)
        self._fail = []              # [code, remaining, details]
        self._fail_every = None      # (n, code)
        self._calls = 0
        self._unavailable = False
        self._active = 0
        self.max_concurrent = 0
        self._key = 2251799813685248
        self._server = None
        self.on_publish = None       # callback(record) for the demo CLI
        self.reject_tokens = False
        self.echo_auth = False

    # ------------------------------------------------------------ control
    def fail_next(self, code, n=1, details=None):
        with self._lock:
            self._fail.append([_code(code), n, details])

    def fail_every(self, n, code="RESOURCE_EXHAUSTED"):
        with self._lock:
            self._fail_every = (n, _code(code)) if n else None

    def set_unavailable(self, down=True):
        with self._lock:
            self._unavailable = down

    def clear(self):
        with self._lock:
            self._records.clear()

    def requests(self, method="PublishMessage", status=None):
        with self._lock:
            return [r for r in self._records
                    if (method is None or r["method"] == method)
                    and (status is None or r["status"] == status)]

    def published_ids(self):
        return {r["messageId"] for r in self.requests(status="OK")}

    def wait_for(self, pred, timeout=10.0, method="PublishMessage", status=None):
        """Wait until PRED(requests) is true, or until COUNT requests (with
        STATUS, if given) arrived. Returns the requests; raises on timeout."""
        if isinstance(pred, int):
            count = pred
            pred = lambda rs: len(rs) >= count  # noqa: E731
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                rs = [r for r in self._records if r["method"] == method
                      and (status is None or r["status"] == status)]
                if pred(rs):
                    return rs
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("gateway: %d %s request(s) after %.1fs"
                                       % (len(rs), method, timeout))
                self._lock.wait(min(left, 0.2))

    # ------------------------------------------------------------ serving
    def _record(self, method, fields, context, status, details=""):
        rec = dict(fields)
        rec.update(method=method, status=status, details=details, time=time.time(),
                   mono=time.monotonic(),
                   metadata={k.lower(): v for k, v in context.invocation_metadata()})
        with self._lock:
            self._records.append(rec)
            self._lock.notify_all()
        if self.on_publish and method == "PublishMessage":
            self.on_publish(rec)
        return rec

    def _injected(self):
        with self._lock:
            if self._unavailable:
                return grpc.StatusCode.UNAVAILABLE, "no leader for partition (stand-in is down)"
            self._calls += 1
            if self._fail:
                f = self._fail[0]
                f[1] -= 1
                if f[1] <= 0:
                    self._fail.pop(0)
                return f[0], f[2] or "injected %s" % f[0].name
            if self._fail_every and self._calls % self._fail_every[0] == 0:
                code = self._fail_every[1]
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    return code, "Reached maximum capacity of requests handled"
                return code, "injected %s" % code.name
        return None

    def _auth(self, context):
        if self.basic_auth:
            return self._basic_auth(context)
        if not self.token_check and not self.reject_tokens:
            return None
        md = dict(context.invocation_metadata())
        value = md.get("authorization")
        if not value:
            return "Expected bearer token at header with key [authorization], but found nothing"
        if (self.reject_tokens or not value.startswith("Bearer ")
                or not self.token_check(value[len("Bearer "):])):
            if self.echo_auth:
                return ("Expected a valid token at header with key [authorization], "
                        "but found: %s" % value)
            return "Failed to parse bearer token, see cause for details"
        return None

    def _basic_auth(self, context):
        # The messages of the 8.8 gateway's AuthenticationHandler.BasicAuth.
        value = dict(context.invocation_metadata()).get("authorization") or ""
        if not value.startswith("Basic "):
            return "Expected authentication information to start with 'Basic '"
        try:
            user, _, password = base64.b64decode(value[len("Basic "):], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "Invalid credentials"
        return None if (user, password) == tuple(self.basic_auth) else "Invalid credentials"

    def _enter(self):
        with self._lock:
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)

    def _leave(self):
        with self._lock:
            self._active -= 1

    def _publish(self, req, context):
        self._enter()
        try:
            if self.delay_ms:
                time.sleep(self.delay_ms / 1000.0)
            fields = {"name": req.name, "correlationKey": req.correlationKey,
                      "timeToLive": req.timeToLive, "messageId": req.messageId,
                      "variables": req.variables, "tenantId": req.tenantId}
            status, details = self._decide_publish(req, context)
            self._record("PublishMessage", fields, context, status.name, details)
            if status != grpc.StatusCode.OK:
                context.abort(status, details)
            self._key += 1
            return self.pb.PublishMessageResponse(key=self._key, tenantId=req.tenantId or "<default>")
        finally:
            self._leave()

    def _decide_publish(self, req, context):
        why = self._auth(context)
        if why:
            return grpc.StatusCode.UNAUTHENTICATED, why
        inj = self._injected()
        if inj:
            return inj
        if req.variables:
            try:
                doc = json.loads(req.variables)
            except ValueError as e:
                return grpc.StatusCode.INVALID_ARGUMENT, "Invalid JSON value: %s" % e
            if not isinstance(doc, dict):
                kind = "ARRAY" if isinstance(doc, list) else type(doc).__name__.upper()
                return (grpc.StatusCode.INVALID_ARGUMENT, "Property 'variables' is invalid: "
                        "Expected document to be a root level object, but was '%s'" % kind)
        if req.tenantId not in ("", "<default>") and not self.multi_tenancy:
            return (grpc.StatusCode.INVALID_ARGUMENT, "Expected to handle gRPC request PublishMessage "
                    "with tenant identifier '%s', but multi-tenancy is disabled" % req.tenantId)
        if req.messageId:
            k = (req.name, req.correlationKey, req.messageId, req.tenantId or "<default>")
            now = time.monotonic()
            with self._lock:
                exp = self._buffered.get(k)
                if exp is not None and exp > now:
                    return (grpc.StatusCode.ALREADY_EXISTS,
                            "Command 'PUBLISH' rejected with code 'ALREADY_EXISTS': Expected to "
                            "publish a new message with id '%s', but a message with that id was "
                            "already published" % req.messageId)
                if req.timeToLive > 0:
                    self._buffered[k] = now + req.timeToLive / 1000.0
        return grpc.StatusCode.OK, ""

    def _topology(self, req, context):
        why = self._auth(context)
        self._record("Topology", {}, context, "UNAUTHENTICATED" if why else "OK")
        if why:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
        pb = self.pb
        part = pb.Partition(partitionId=1, role=pb.Partition.LEADER, health=pb.Partition.HEALTHY)
        broker = pb.BrokerInfo(nodeId=0, host="localhost", port=26501, partitions=[part],
                               version="8.4.0")
        return pb.TopologyResponse(brokers=[broker], clusterSize=1, partitionsCount=1,
                                   replicationFactor=1, gatewayVersion="8.4.0-stand-in")

    def _simple(self, method, response_cls):
        def handler(req, context):
            why = self._auth(context)
            self._record(method, {}, context, "UNAUTHENTICATED" if why else "OK")
            if why:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
            return response_cls()
        return handler

    def start(self):
        pb = self.pb

        def h(fn, req_cls):
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req_cls.FromString,
                response_serializer=lambda m: m.SerializeToString())
        handlers = {
            "PublishMessage": h(self._publish, pb.PublishMessageRequest),
            "Topology": h(self._topology, pb.TopologyRequest),
            "BroadcastSignal": h(self._simple("BroadcastSignal", pb.BroadcastSignalResponse),
                                 pb.BroadcastSignalRequest),
            "CreateProcessInstance": h(self._simple("CreateProcessInstance",
                                                    pb.CreateProcessInstanceResponse),
                                       pb.CreateProcessInstanceRequest),
        }
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=128),
                                   handlers=[grpc.method_handlers_generic_handler(
                                       "gateway_protocol.Gateway", handlers)],
                                   options=[("grpc.max_receive_message_length", 4 << 20)])
        addr = "%s:%d" % (self.host, self._want_port)
        if self.tls:
            with open(self.tls[0], "rb") as c, open(self.tls[1], "rb") as k:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            self.port = self._server.add_secure_port(addr, creds)
        else:
            self.port = self._server.add_insecure_port(addr)
        if not self.port:
            raise RuntimeError("gateway: cannot bind %s" % addr)
        self._server.start()
        return self

    def stop(self):
        if self._server:
            self._server.stop(grace=0).wait(5)
            self._server = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=26500)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--proto")
    a = ap.parse_args()
    tls = (a.tls_cert, a.tls_key) if a.tls_cert else None
    gw = StandInGateway(port=a.port, tls=tls, proto=a.proto)

    def show(r):
        auth = "bearer token" if r["metadata"].get("authorization", "").startswith("Bearer ") else "no token"
        print("PublishMessage name=%r correlationKey=%r messageId=%r ttl=%d tenant=%r variables=%s (%s) -> %s"
              % (r["name"], r["correlationKey"], r["messageId"], r["timeToLive"], r["tenantId"],
                 r["variables"], auth, r["status"]), flush=True)
    gw.on_publish = show
    gw.start()
    print("stand-in gateway on port %d (%s), proto %s" % (gw.port, "TLS" if tls else "plaintext",
                                                         gw.proto_path), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    gw.stop()


if __name__ == "__main__":
    sys.exit(main())
