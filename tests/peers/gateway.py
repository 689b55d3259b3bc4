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
        self._jobs = {}              # key -> job dict (see create_job)
        # Partition 4's keys start at 2^53: not exact as a double, so the
        # agent must carry job keys as int64 all the way.
        self._job_key = (4 << 51) + 1

    # ------------------------------------------------------------ control
    def fail_next(self, code, n=1, details=None, method=None):
        """Fail the next N calls (of METHOD only, when given) with CODE."""
        with self._lock:
            self._fail.append([_code(code), n, details, method])

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

    # ------------------------------------------------------------ jobs
    # Zeebe's job life cycle, as far as a worker sees it: ACTIVATABLE ->
    # ACTIVATED (locked until deadline; after it the job is ACTIVATABLE
    # again and the old holder gets NOT_FOUND) -> COMPLETED / FAILED
    # (retries > 0: ACTIVATABLE after the back-off; 0: INCIDENT) /
    # ERROR_THROWN.
    def create_job(self, type, variables=None, headers=None, retries=3, bpmn_process_id="process",
                   element_id="task", tenant_id="<default>"):
        with self._lock:
            key = self._job_key
            self._job_key += 1
            self._jobs[key] = dict(key=key, type=type, variables=dict(variables or {}),
                                   headers=dict(headers or {}), retries=retries,
                                   bpmnProcessId=bpmn_process_id, elementId=element_id,
                                   tenantId=tenant_id, processInstanceKey=key + 1000000,
                                   state="ACTIVATABLE", deadline=0.0, not_before=0.0,
                                   activations=0, worker="", history=[])
            self._lock.notify_all()
            return key

    def job(self, key):
        with self._lock:
            self._expire()
            j = self._jobs[key]
            return dict(j, variables=dict(j["variables"]), history=list(j["history"]))

    def wait_job(self, key, pred, timeout=10.0):
        """Wait until PRED(job) is true; returns the job, raises on timeout."""
        end = time.monotonic() + timeout
        while True:
            j = self.job(key)
            if pred(j):
                return j
            if time.monotonic() >= end:
                raise TimeoutError("gateway: job %d is %s (%s) after %.1fs"
                                   % (key, j["state"], j["history"], timeout))
            with self._lock:
                self._lock.wait(0.1)

    def _expire(self):
        now = time.monotonic()
        for j in self._jobs.values():
            if j["state"] == "ACTIVATED" and now >= j["deadline"]:
                j["state"] = "ACTIVATABLE"
                j["history"].append("TIMED_OUT")

    def _activatable(self, req):
        self._expire()
        now = time.monotonic()
        tenants = list(req.tenantIds) or ["<default>"]
        return [j for j in self._jobs.values()
                if j["type"] == req.type and j["state"] == "ACTIVATABLE" and j["retries"] > 0
                and j["not_before"] <= now and j["tenantId"] in tenants]

    def _activate_job(self, j, req):
        pb = self.pb
        j["state"] = "ACTIVATED"
        j["deadline"] = time.monotonic() + req.timeout / 1000.0
        j["activations"] += 1
        j["worker"] = req.worker
        j["history"].append("ACTIVATED")
        names = list(req.fetchVariable)
        variables = {k: v for k, v in j["variables"].items() if not names or k in names}
        return pb.ActivatedJob(key=j["key"], type=j["type"], processInstanceKey=j["processInstanceKey"],
                               bpmnProcessId=j["bpmnProcessId"], processDefinitionVersion=1,
                               processDefinitionKey=2251799813685200, elementId=j["elementId"],
                               elementInstanceKey=j["key"] + 2000000,
                               customHeaders=json.dumps(j["headers"]), worker=req.worker,
                               retries=j["retries"], deadline=int(time.time() * 1000 + req.timeout),
                               variables=json.dumps(variables), tenantId=j["tenantId"])

    def _activate(self, req, context):
        why = self._auth(context)
        fields = {"type": req.type, "worker": req.worker, "timeout": req.timeout,
                  "maxJobsToActivate": req.maxJobsToActivate, "requestTimeout": req.requestTimeout,
                  "fetchVariable": list(req.fetchVariable), "tenantIds": list(req.tenantIds)}
        if why:
            self._record("ActivateJobs", fields, context, "UNAUTHENTICATED", why)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
        inj = self._injected("ActivateJobs")
        if inj:
            self._record("ActivateJobs", fields, context, inj[0].name, inj[1])
            context.abort(inj[0], inj[1])
        if req.maxJobsToActivate < 1:
            self._record("ActivateJobs", fields, context, "INVALID_ARGUMENT")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "Expected to activate at least 1 job, but the requested amount was %d"
                          % req.maxJobsToActivate)
        # Long polling: hold the call until jobs come or requestTimeout ends
        # (0 = the gateway's default, 10 s; negative = answer at once).
        wait = 10.0 if req.requestTimeout == 0 else max(req.requestTimeout, 0) / 1000.0
        end = time.monotonic() + wait
        gone = threading.Event()    # the client cancelled: activate nothing

        def on_done():
            gone.set()
            with self._lock:
                self._lock.notify_all()
        context.add_callback(on_done)
        with self._lock:
            while True:
                if gone.is_set() or not context.is_active():
                    ready = []
                    break
                ready = self._activatable(req)
                if ready or time.monotonic() >= end:
                    break
                self._lock.wait(min(0.05, max(end - time.monotonic(), 0.001)))
            jobs = [self._activate_job(j, req) for j in ready[:req.maxJobsToActivate]]
            self._lock.notify_all()
        self._record("ActivateJobs", dict(fields, jobs=[j.key for j in jobs]), context, "OK")
        if jobs:
            yield self.pb.ActivateJobsResponse(jobs=jobs)

    def _job_command(self, method, verb, req, context, apply):
        why = self._auth(context)
        fields = {f.name: getattr(req, f.name) for f in req.DESCRIPTOR.fields}
        if why:
            self._record(method, fields, context, "UNAUTHENTICATED", why)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
        inj = self._injected(method)
        if inj:
            self._record(method, fields, context, inj[0].name, inj[1])
            context.abort(inj[0], inj[1])
        with self._lock:
            self._expire()
            j = self._jobs.get(req.jobKey)
            if j is None or j["state"] != "ACTIVATED":
                status, details = grpc.StatusCode.NOT_FOUND, (
                    "Command '%s' rejected with code 'NOT_FOUND': Expected to %s job with key "
                    "'%d', but no such job was found" % (verb.upper(), verb, req.jobKey))
            else:
                status, details = apply(j)
            if status == grpc.StatusCode.OK:
                j["history"].append(method)
            self._lock.notify_all()
        self._record(method, fields, context, status.name, details)
        if status != grpc.StatusCode.OK:
            context.abort(status, details)

    def _variables_ok(self, text):
        if not text:
            return {}
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def _complete(self, req, context):
        def apply(j):
            doc = self._variables_ok(req.variables)
            if doc is None:
                return (grpc.StatusCode.INVALID_ARGUMENT, "Property 'variables' is invalid: Expected "
                        "document to be a root level object")
            j["variables"].update(doc)
            j["state"] = "COMPLETED"
            return grpc.StatusCode.OK, ""
        self._job_command("CompleteJob", "complete", req, context, apply)
        return self.pb.CompleteJobResponse()

    def _fail_job(self, req, context):
        def apply(j):
            j["retries"] = req.retries
            j["error"] = req.errorMessage
            if req.retries > 0:
                j["state"] = "ACTIVATABLE"
                j["not_before"] = time.monotonic() + req.retryBackOff / 1000.0
            else:
                j["state"] = "INCIDENT"
            return grpc.StatusCode.OK, ""
        self._job_command("FailJob", "fail", req, context, apply)
        return self.pb.FailJobResponse()

    def _throw(self, req, context):
        def apply(j):
            if not req.errorCode:
                return grpc.StatusCode.INVALID_ARGUMENT, "Expected an error code, but it was empty"
            j["state"] = "ERROR_THROWN"
            j["errorCode"] = req.errorCode
            j["error"] = req.errorMessage
            return grpc.StatusCode.OK, ""
        self._job_command("ThrowError", "throw an error for", req, context, apply)
        return self.pb.ThrowErrorResponse()

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

    def _injected(self, method=None):
        with self._lock:
            if self._unavailable:
                return grpc.StatusCode.UNAVAILABLE, "no leader for partition (stand-in is down)"
            self._calls += 1
            fails = [f for f in self._fail if f[3] is None or f[3] == method]
            if fails:
                f = fails[0]
                f[1] -= 1
                if f[1] <= 0:
                    self._fail.remove(f)
                return f[0], f[2] or "injected %s" % f[0].name
            if (self._fail_every and method == "PublishMessage"
                    and self._calls % self._fail_every[0] == 0):
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
        inj = self._injected("PublishMessage")
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
            "ActivateJobs": grpc.unary_stream_rpc_method_handler(
                self._activate, request_deserializer=pb.ActivateJobsRequest.FromString,
                response_serializer=lambda m: m.SerializeToString()),
            "CompleteJob": h(self._complete, pb.CompleteJobRequest),
            "FailJob": h(self._fail_job, pb.FailJobRequest),
            "ThrowError": h(self._throw, pb.ThrowErrorRequest),
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
