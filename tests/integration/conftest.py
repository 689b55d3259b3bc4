"""Fixtures for the integration tests: real peers on loopback, the real
binary ($M2Z_BIN).

    certs          (session) tests/peers/certs.make_certs(): CA, localhost
                   server cert, an unrelated CA, a wrong-name cert, client cert
    broker         mosquitto on a free port, persistent, unlimited queue
    token_server   OAuth token endpoint over HTTPS (test CA), CLIENT_ID/SECRET/AUDIENCE
    gateway        stand-in Zeebe gateway over TLS, checks tokens with token_server
    gateway_factory(tls=True, token_check=..., **kw) more gateways (plaintext, ...)
    agent          factory: agent(routes=..., sections=..., env=...) -> util.Agent
    publish        publish(topic, payload, qos=1); publish.many([(t, p), ...])

Adding a fault test: take `agent`, `broker`, `gateway`, `publish`; use
gateway.set_unavailable()/fail_next(), broker.restart(), a.kill() then
a.start() (same config and spool), and a.wait_stats(lambda s: ...).
"""

import os
import signal
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..")))  # "peers" package

import util  # noqa: E402

from util import AUDIENCE, CLIENT_ID, CLIENT_SECRET  # noqa: E402

DEFAULT_ROUTES = {
    "events": {
        "topic": "m2z/+/+/event",
        "message_name": "device-event",
        "correlation_key": "{3}",
    },
}


# ---------------------------------------------------------------- binary

@pytest.fixture(scope="session")
def m2z_bin():
    path = util.agent_binary()
    if not os.path.exists(path):
        if os.environ.get("M2Z_BIN"):
            pytest.fail("M2Z_BIN=%s does not exist" % path)
        pytest.skip("agent binary %s not built (run make)" % path)
    return path


# ---------------------------------------------------------------- peers

def _cert(certs, *names):
    """certs[...] under the first of NAMES present (the peer's dict keys)."""
    for n in names:
        if n in certs:
            return certs[n]
    raise KeyError("certs has none of %s (has %s)" % (names, sorted(certs)))


class CertPaths:
    """Named access to the certs dict whatever its exact key names."""

    def __init__(self, d):
        self.d = d
        self.ca = _cert(d, "ca", "ca_cert", "ca_file", "ca_pem")
        self.server_cert = _cert(d, "server_cert", "cert", "server_crt", "localhost_cert")
        self.server_key = _cert(d, "server_key", "key", "localhost_key")
        self.other_ca = _cert(d, "other_ca", "unrelated_ca", "ca2", "other_ca_cert")
        self.wrong_name_cert = _cert(d, "wrong_name_cert", "wrong_cert", "wrongname_cert")
        self.wrong_name_key = _cert(d, "wrong_name_key", "wrong_key", "wrongname_key")

    def __getitem__(self, k):
        return self.d[k]


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    from peers import certs as certs_mod
    d = tmp_path_factory.mktemp("certs")
    return CertPaths(certs_mod.make_certs(str(d)))


def _start(peer):
    start = getattr(peer, "start", None)
    if start is not None:
        r = start()
        if r is not None and r is not peer and hasattr(r, "port"):
            return r
    return peer


def _stop(peer):
    try:
        peer.stop()
    except Exception as e:  # noqa: BLE001 - teardown must go on
        print("teardown: stopping %r: %s" % (peer, e))


@pytest.fixture
def broker(tmp_path):
    b = util.Broker(str(tmp_path / "broker")).start()
    yield b
    b.stop()


@pytest.fixture
def token_server(certs):
    from peers.token_server import TokenServer
    ts = _start(TokenServer(port=0, cert=certs.server_cert, key=certs.server_key,
                            client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                            audience=AUDIENCE))
    yield ts
    _stop(ts)


@pytest.fixture
def gateway_factory(certs):
    """gateway_factory(tls=True|False|(cert, key), token_check=None, **kw)."""
    from peers.gateway import StandInGateway
    made = []

    def make(tls=True, token_check=None, **kw):
        if tls is True:
            tls = (certs.server_cert, certs.server_key)
        elif tls is False:
            tls = None
        gw = _start(StandInGateway(port=0, tls=tls, token_check=token_check, **kw))
        made.append(gw)
        return gw
    yield make
    for gw in made:
        _stop(gw)


@pytest.fixture
def gateway(gateway_factory, token_server):
    return gateway_factory(tls=True, token_check=token_server.is_valid)


@pytest.fixture
def publish(broker):
    pubs = []

    class _Pub:
        def _p(self):
            if not pubs or pubs[-1][1] != broker.port:
                pubs.append((util.Publisher(broker.port), broker.port))
            return pubs[-1][0]

        def __call__(self, topic, payload, qos=1, **kw):
            return self._p()(topic, payload, qos=qos, **kw)

        def many(self, messages, qos=1, timeout=120.0):
            return self._p().many(messages, qos=qos, timeout=timeout)

        def reconnect(self):
            """Drop the connection (e.g. after broker.restart())."""
            while pubs:
                try:
                    pubs.pop()[0].close()
                except Exception:  # noqa: BLE001
                    pass
    p = _Pub()
    yield p
    p.reconnect()


# ---------------------------------------------------------------- agent

_DEFAULT = object()


@pytest.fixture
def agent(request, tmp_path, m2z_bin, certs):
    """Factory. agent(routes=None, sections=None, extra_ini="", env=None,
    start=True, gateway=<fixture>, token_server=<fixture>, oauth=True,
    log_level="debug", stats_interval="0", spool_dir=None, name=None)
    writes an INI and starts the binary, waiting for the 'subscribed' line.

    SECTIONS is merged over the generated config (None removes a section or
    key). gateway=None / token_server=None / oauth=False leave those parts
    out. Returns util.Agent (restartable with the same config and spool)."""
    agents = []
    request.node._m2z_agents = agents

    def make(routes=None, sections=None, extra_ini="", env=None, start=True,
             gateway=_DEFAULT, token_server=_DEFAULT, oauth=True, zeebe_ca=_DEFAULT,
             log_level="debug", stats_interval="0", spool_dir=None, name=None,
             wait_ready=True, broker=_DEFAULT):
        n = len(agents)
        name = name or "agent%d" % n
        workdir = tmp_path / name
        workdir.mkdir()
        spool_dir = spool_dir or str(workdir / "spool")
        if broker is _DEFAULT:
            broker = request.getfixturevalue("broker")
        if gateway is _DEFAULT:
            gateway = request.getfixturevalue("gateway")
        if token_server is _DEFAULT:
            token_server = request.getfixturevalue("token_server") if oauth else None
        base = {
            "zeebe": {},
            "mqtt": {"client_id": "m2z-test-" + uuid.uuid4().hex[:10]},
            "spool": {"directory": spool_dir},
            "log": {"level": log_level, "stats_interval": stats_interval},
        }
        if broker is not None:
            base["mqtt"].update({"host": "127.0.0.1", "port": broker.port})
        if gateway is not None:
            base["zeebe"]["address"] = "localhost:%d" % gateway.port
            ca = certs.ca if zeebe_ca is _DEFAULT else zeebe_ca
            if ca:
                base["zeebe"]["ca_certificate"] = ca
        if oauth and token_server is not None:
            base["oauth"] = {"url": token_server.url, "client_id": CLIENT_ID,
                             "client_secret": CLIENT_SECRET, "audience": AUDIENCE,
                             "ca_certificate": certs.ca}
        conf_path = workdir / "mqtt2zeebe.ini"

        def write(routes=routes, sections=sections, extra_ini=extra_ini):
            cfg = util.merge_sections(base, sections)
            text = util.ini_text(cfg, DEFAULT_ROUTES if routes is None else routes, extra_ini)
            conf_path.write_text(text)
            return text

        a = util.Agent(str(conf_path), str(workdir / "agent.log"), spool_dir, env=env, name=name)
        a.config_text = write()

        def reconfigure(routes=routes, sections=sections, extra_ini=extra_ini):
            """Rewrite the INI (same MQTT client id, spool, peers) for the
            next start(); arguments as for agent()."""
            a.config_text = write(routes, sections, extra_ini)
        a.reconfigure = reconfigure
        agents.append(a)
        if start:
            a.start(wait_ready=wait_ready)
        return a

    yield make

    problems = []
    for a in agents:
        if a.running():
            try:
                a.stop(signal.SIGTERM, timeout=15)
            except util.AgentError as e:
                problems.append("%s: %s" % (a.name, str(e).splitlines()[0]))
        san = a.sanitizer_reports()
        if san:
            problems.append("%s: sanitizer report:\n%s\n%s" % (a.name, "\n".join(san[:5]), a.tail(80)))
        problems += secrets_in_log(a)
    if problems:
        pytest.fail("agent teardown:\n" + "\n".join(problems), pytrace=False)


def secrets_in_log(a):
    """Every test, every agent: no issued token and not the client secret
    in any log line (issue 8, item 6)."""
    from peers.token_server import TokenServer
    log = a.log()
    found = []
    if CLIENT_SECRET in log:
        found.append("the client secret")
    found += ["issued token %s..." % t[:6] for t in TokenServer.every_token_issued() if t in log]
    if not found:
        return []
    every = TokenServer.every_token_issued()
    lines = [i + 1 for i, ln in enumerate(log.splitlines())
             if CLIENT_SECRET in ln or any(t in ln for t in every)]
    # Line numbers only: the report itself must not repeat the secret.
    return ["%s: secret in the log %s: %s (lines %s)"
            % (a.name, a.log_path, ", ".join(found[:3]), lines[:10])]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for a in getattr(item, "_m2z_agents", []):
            rep.sections.append(("agent log: %s (%s)" % (a.name, a.log_path), a.tail(150)))
            rep.sections.append(("agent config: %s" % a.name, getattr(a, "config_text", "")))
