"""Helpers for the integration tests: the MQTT broker, the agent process,
an MQTT publisher, INI writing, log/stats/dead-letter parsing, and waits.

Everything here has a deadline; nothing sleeps for a fixed time to "let
things settle". Peers (gateway, token server, certs) live in tests/peers.
"""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import uuid

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOSQUITTO = os.environ.get("M2Z_MOSQUITTO", "/usr/sbin/mosquitto")

READY_RE = re.compile(r"\[mqtt\] subscribed to \d+ filter")
STATS_RE = re.compile(r"\[stats\] (.*)$")
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error: |"
                          r"ThreadSanitizer|WARNING: ThreadSanitizer")


CLIENT_ID = "m2z-test-client"
# Random per run so a grep of the log cannot match by accident.
CLIENT_SECRET = "cs-" + secrets.token_hex(12)
MQTT_PASSWORD = "mp-" + secrets.token_hex(12)
AUDIENCE = "zeebe.test.local"


class Timeout(AssertionError):
    pass


# ---------------------------------------------------------------- waits

def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll PRED until it returns something truthy; return that. Raise
    Timeout (an AssertionError) naming WHAT after TIMEOUT seconds. The last
    exception raised by PRED, if any, is chained."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
            last_exc = None
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            raise Timeout("timed out after %.1fs waiting for %s" % (timeout, what)) from last_exc
        time.sleep(interval)


def read_text(path):
    """PATH as text ("" when it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def free_port():
    """A port that was free a moment ago on 127.0.0.1 (the caller retries
    when a peer fails to bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- INI

SECTION_ORDER = ["zeebe", "oauth", "mqtt", "spool", "forward", "log"]


def _ini_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def ini_text(sections, routes=None, extra=""):
    """SECTIONS: {"zeebe": {"address": ...}, ...}; a None section or value
    is left out. ROUTES: {"name": {"topic": ..., ...}} in order (a list of
    (name, dict) pairs works too). EXTRA is appended verbatim."""
    out = []
    names = [s for s in SECTION_ORDER if s in sections] + \
        [s for s in sections if s not in SECTION_ORDER]
    for name in names:
        body = sections[name]
        if not body:  # None or empty: leave the section out
            continue
        out.append("[%s]" % name)
        for k, v in body.items():
            if v is not None:
                out.append("%s = %s" % (k, _ini_value(v)))
        out.append("")
    items = routes.items() if isinstance(routes, dict) else (routes or [])
    for name, body in items:
        out.append("[route %s]" % name)
        for k, v in body.items():
            if v is not None:
                out.append("%s = %s" % (k, _ini_value(v)))
        out.append("")
    if extra:
        out.append(extra.strip("\n"))
        out.append("")
    return "\n".join(out)


def merge_sections(base, override):
    """Deep-merge OVERRIDE into a copy of BASE (two levels). A None section
    in OVERRIDE removes the section; a None value removes the key."""
    res = {k: dict(v) for k, v in base.items() if v is not None}
    for sec, body in (override or {}).items():
        if body is None:
            res.pop(sec, None)
            continue
        cur = res.setdefault(sec, {})
        for k, v in body.items():
            if v is None:
                cur.pop(k, None)
            else:
                cur[k] = v
    return res


# ---------------------------------------------------------------- broker

class Broker:
    """A mosquitto 2.0 broker on 127.0.0.1 with persistence, no queue limit
    (a large QoS 1 backlog for our disconnected persistent session must not
    be dropped), anonymous access; optional TLS listener."""

    def __init__(self, workdir, tls=None):
        self.dir = workdir
        os.makedirs(self.dir, exist_ok=True)
        self.tls = tls  # (ca, cert, key) or None
        self.port = None
        self.proc = None
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        self.conf_path = os.path.join(self.dir, "mosquitto.conf")

    def _write_conf(self):
        lines = [
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous true",
            "user root" if os.geteuid() == 0 else "",
            "persistence true",
            "persistence_location %s/" % self.dir,
            "autosave_interval 1",
            "max_queued_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.tls:
            ca, cert, key = self.tls
            lines += ["cafile %s" % ca, "certfile %s" % cert, "keyfile %s" % key]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(l for l in lines if l) + "\n")

    def start(self, timeout=10.0):
        keep_port = self.port is not None
        for _ in range(5):
            if not keep_port:
                self.port = free_port()
            self._write_conf()
            logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf_path],
                                         stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            logf.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if port_accepts(self.port):
                    return self
                time.sleep(0.02)
            self._terminate()
            if keep_port:
                # A restart on the same port: the old socket may linger.
                time.sleep(0.2)
        raise RuntimeError("mosquitto did not start; log:\n" + self.log())

    def _terminate(self, timeout=10.0):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self):
        """Graceful stop: mosquitto saves its database (persistent sessions
        and their queued messages survive a restart)."""
        self._terminate()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self):
        """Stop and start again on the same port with the same database."""
        self.stop()
        return self.start()

    def log(self):
        return read_text(self.log_path)


# ---------------------------------------------------------------- publisher

class Publisher:
    """paho-mqtt client that publishes and waits for the PUBACK/PUBCOMP."""

    def __init__(self, port, host="127.0.0.1", client_id=None):
        import paho.mqtt.client as mqtt
        self._mqtt = mqtt
        self.client = mqtt.Client(client_id=client_id or "pub-" + uuid.uuid4().hex[:12],
                                  clean_session=True)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self._connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc: rc == 0 and self._connected.set()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise Timeout("publisher could not connect to 127.0.0.1:%d" % port)

    @staticmethod
    def _encode(payload):
        if isinstance(payload, (dict, list)):
            return json.dumps(payload).encode()
        if isinstance(payload, str):
            return payload.encode()
        return payload

    def __call__(self, topic, payload, qos=1, retain=False, timeout=10.0):
        info = self.client.publish(topic, self._encode(payload), qos=qos, retain=retain)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError("publish failed rc=%d" % info.rc)
        if qos > 0:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise Timeout("no PUBACK for %s within %.0fs" % (topic, timeout))
        return info

    def many(self, messages, qos=1, timeout=120.0):
        """Publish [(topic, payload), ...] pipelined; wait for all acks."""
        infos = []
        for topic, payload in messages:
            info = self.client.publish(topic, self._encode(payload), qos=qos)
            if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_QUEUE_SIZE):
                raise RuntimeError("publish failed rc=%d" % info.rc)
            infos.append(info)
        deadline = time.monotonic() + timeout
        for info in infos:
            left = deadline - time.monotonic()
            if left <= 0 or (qos > 0 and not _wait_published(info, left)):
                raise Timeout("bulk publish: %d of %d acknowledged within %.0fs" % (
                    sum(1 for i in infos if i.is_published()), len(infos), timeout))
        return len(infos)

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def _wait_published(info, timeout):
    info.wait_for_publish(timeout)
    return info.is_published()


# ---------------------------------------------------------------- agent

class AgentError(AssertionError):
    pass


def agent_binary():
    return os.environ.get("M2Z_BIN") or os.path.join(REPO, "build", "mqtt2zeebe")


def clean_env(extra=None):
    """The test runner's environment minus anything that would configure
    the agent behind the test's back (ZEEBE_*), plus EXTRA."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ZEEBE_", "CAMUNDA_"))
           and k not in ("M2Z_MQTT_PASSWORD", "M2Z_LOG_LEVEL", "M2Z_CREDENTIALS_FILE")}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    # Same as the Makefile's SANITIZE=1 setting, for pytest run by hand.
    env.setdefault("LSAN_OPTIONS", "suppressions=%s:print_suppressions=0"
                   % os.path.join(REPO, "tests", "lsan.supp"))
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_cli(args, env=None, timeout=30.0, input=None):
    """Run the binary to completion (--check, --dry-run, --version...).
    Returns CompletedProcess with text stdout/stderr."""
    r = subprocess.run([agent_binary()] + list(args), env=clean_env(env),
                       capture_output=True, timeout=timeout, input=input)
    err = r.stderr.decode("utf-8", "replace")
    if SANITIZER_RE.search(err):
        raise AssertionError("sanitizer report from %s:\n%s" % (" ".join(args), err))
    return r


class Agent:
    """One mqtt2zeebe process (and its restarts) with one config and spool.

    The log (stdout+stderr) of every run is appended to one file; each
    start() remembers where its run begins so readiness and stats are read
    from the current run only."""

    def __init__(self, conf_path, log_path, spool_dir, env=None, name="agent"):
        self.conf_path = conf_path
        self.log_path = log_path
        self.spool_dir = spool_dir
        self.env = dict(env or {})
        self.name = name
        self.proc = None
        self.run_start = 0      # byte offset in the log of the current run
        self.returncodes = []   # of finished runs

    # -- lifecycle
    def start(self, wait_ready=True, timeout=20.0, args=()):
        if self.proc and self.proc.poll() is None:
            raise AgentError("agent already running")
        with open(self.log_path, "ab") as logf:
            self.run_start = logf.tell()
            logf.write(("==== %s start %s\n" % (self.name, time.strftime("%H:%M:%S"))).encode())
            logf.flush()
            self.proc = subprocess.Popen([agent_binary(), "-c", self.conf_path] + list(args),
                                         stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=clean_env(self.env),
                                         start_new_session=True)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_RE.search(self.run_log()):
                return
            if self.proc.poll() is not None:
                raise AgentError("agent exited with %s before it was ready; log tail:\n%s" % (
                    self.proc.returncode, self.tail()))
            time.sleep(0.05)
        raise AgentError("agent not ready (no 'subscribed' line) after %.0fs; log tail:\n%s" % (
            timeout, self.tail()))

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Send SIG and wait for the exit; returns the exit code (negative:
        killed by a signal). Raises AgentError (after SIGKILL) when the
        process does not exit within TIMEOUT."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.returncodes.append(self.proc.returncode)
                raise AgentError("agent did not exit within %.0fs of signal %d; log tail:\n%s" % (
                    timeout, sig, self.tail()))
        rc = self.proc.returncode
        self.returncodes.append(rc)
        return rc

    def kill(self):
        """SIGKILL: no chance to flush anything (crash / power-loss test)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.returncodes.append(self.proc.returncode)
        return self.proc.returncode

    def restart(self, sig=signal.SIGTERM, **kw):
        """Stop (SIG, or kill when sig is SIGKILL) and start again with the
        same config, spool and environment."""
        if sig == signal.SIGKILL:
            self.kill()
        else:
            self.stop(sig)
        return self.start(**kw)

    def wait_exit(self, timeout=15.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AgentError("agent still running after %.0fs; log tail:\n%s" % (timeout, self.tail()))

    # -- log
    def log(self):
        """The whole log, every run."""
        return read_text(self.log_path)

    def log_bytes(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def run_log(self):
        """The log of the current (or last) run."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.run_start)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern, timeout=10.0, run_only=True):
        """Wait for a log line matching regex PATTERN; return the match."""
        rx = re.compile(pattern)

        def find():
            text = self.run_log() if run_only else self.log()
            return rx.search(text)
        try:
            return wait_until(find, timeout, what="log line /%s/" % pattern)
        except Timeout as e:
            raise AgentError("%s; log tail:\n%s" % (e, self.tail())) from None

    # -- stats
    @staticmethod
    def parse_stats(line):
        return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", line)}

    def _stats_lines(self):
        return [m.group(1) for m in map(STATS_RE.search, self.run_log().splitlines()) if m]

    def stats(self, timeout=5.0):
        """SIGUSR1, then the stats line it printed, as {name: int}."""
        if not self.running():
            raise AgentError("agent not running; log tail:\n" + self.tail())
        before = len(self._stats_lines())
        os.kill(self.proc.pid, signal.SIGUSR1)
        try:
            lines = wait_until(lambda: (lambda ls: ls if len(ls) > before else None)(self._stats_lines()),
                               timeout, what="stats line after SIGUSR1")
        except Timeout as e:
            raise AgentError("%s; log tail:\n%s" % (e, self.tail())) from None
        return self.parse_stats(lines[-1])

    def wait_stats(self, pred, timeout=20.0, interval=0.2):
        """Poll stats() until PRED(stats) is true; return those stats. On
        timeout the last stats are in the message."""
        last = {}
        deadline = time.monotonic() + timeout
        while True:
            last = self.stats()
            if pred(last):
                return last
            if time.monotonic() >= deadline:
                raise AgentError("stats never satisfied the condition within %.0fs; last: %s\nlog tail:\n%s"
                                 % (timeout, last, self.tail()))
            time.sleep(interval)

    # -- spool artefacts
    @property
    def dead_letter_path(self):
        return os.path.join(self.spool_dir, "dead-letters.jsonl")

    def dead_letters(self):
        try:
            with open(self.dead_letter_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        return [json.loads(l) for l in data.decode("utf-8").splitlines() if l.strip()]

    def sanitizer_reports(self):
        return [l for l in self.log().splitlines() if SANITIZER_RE.search(l)]


# ---------------------------------------------------------------- gateway records

def field(rec, name, default=None):
    """Read NAME from a recorded request (the peers record dicts)."""
    return rec.get(name, default)


def meta(rec, key):
    """Metadata value KEY (lower-case) of a recorded gateway request, or None."""
    return (rec.get("metadata") or {}).get(key)


def variables(rec):
    """The variables of a recorded PublishMessage request, parsed."""
    v = rec.get("variables")
    return json.loads(v) if v else {}


# ---------------------------------------------------------------- peer adapters

def gw_requests(gw, status="OK"):
    """PublishMessage requests the stand-in gateway answered with STATUS
    (None: every attempt, whatever the answer), in arrival order."""
    return list(gw.requests(status=status))


def gw_attempts(gw):
    """Every PublishMessage call that reached the gateway."""
    return gw_requests(gw, status=None)


def token_requests(ts):
    """Requests the token server recorded (each with the parsed form)."""
    with ts.lock:
        return list(ts.requests)


def token_form(req):
    """The form fields of one recorded token request as {name: value}."""
    return dict(req["form"] or {})


def issued_tokens(ts):
    """Every token the server issued, in order."""
    return ts.tokens_issued()


def token_fetches(ts):
    """Tokens the server issued so far."""
    with ts.lock:
        return ts.fetches
