"""Never acknowledge what was not kept: the spool (and the dead-letter file)
on a real small filesystem that fills up or turns read-only. Real broker,
stand-in gateway, token endpoint and the real binary; a tmpfs mounted by
the test, so it needs root (skipped with the reason otherwise).

Every event carries {"seq": N}; the assertion is the one of
test_lose_nothing: each seq answered OK exactly once at the gateway, any
other copy a counted duplicate (ALREADY_EXISTS) or an injected fault."""

import json
import os
import subprocess

import pytest

import util
from test_lose_nothing import events, exactly_once, order_kept, wait_all_ok

ROUTE = {"ev": {"topic": "dev/+/ev", "message_name": "device-event",
                "correlation_key": "{/key}"}}


def _run(*cmd):
    return subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)


@pytest.fixture
def small_fs(tmp_path):
    """mount(size) -> a fresh tmpfs directory of that size; unmounted (all
    layers) at teardown."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mounted = []

    def mount(size):
        d = tmp_path / ("fs%d" % len(mounted))
        d.mkdir()
        r = _run("mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", str(d))
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs: %s" % r.stdout.strip())
        mounted.append(str(d))
        return str(d)
    yield mount
    # Lazy: the agent (a later fixture) may still have files open here; the
    # filesystem goes once it stops. Loops over stacked mounts.
    for d in mounted:
        while _run("umount", "-l", d).returncode == 0:
            pass


def fill(path, name="filler"):
    """Write zeros into PATH/NAME until the filesystem is full."""
    chunk = b"\0" * 65536
    with open(os.path.join(path, name), "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


# ---------------------------------------------------------------- full disk

def test_full_disk_holds_and_loses_nothing(agent, gateway, publish, small_fs):
    """(reserve = 0 here and below: the tests fill the disk for real; with the
    default reserve the spool reports full first and on_full applies.)
    2 MiB spool filesystem, gateway down, 8,000 QoS 1 events: the spool
    fills the disk, the agent holds the MQTT acknowledgement (the broker
    keeps the rest); when the gateway is back and the disk grows, every
    event arrives exactly once (or as a counted duplicate)."""
    spool = small_fs("2m")
    a = agent(routes=ROUTE, spool_dir=spool, sections={"spool": {"sync": "none", "reserve": "0"}})
    gateway.set_unavailable(True)
    n = 8000
    msgs = events(n)
    publish.many(msgs, timeout=240)
    s = a.wait_stats(lambda s: s["durability_failures"] >= 1 and s["holding"] == 1, timeout=120)
    assert s["spooled"] < n, s
    assert s["dropped"] == 0 and s["rejected"] == 0 and s["dead_lettered"] == 0, s
    a.wait_log("holding the MQTT acknowledgement")
    gateway.set_unavailable(False)
    r = _run("mount", "-o", "remount,size=64m", spool)
    assert r.returncode == 0, r.stdout
    wait_all_ok(gateway, n, timeout=240)
    exactly_once(gateway, range(n), allowed=("ALREADY_EXISTS", "UNAVAILABLE"))
    order_kept(gateway)
    s = a.wait_stats(lambda s: s["backlog"] == 0 and s["holding"] == 0, timeout=60)
    assert s["published"] == n and s["dead_lettered"] == 0, s
    a.wait_log("events are durable again")


# ---------------------------------------------------------------- read-only

def test_read_only_spool_holds_then_resumes(agent, gateway, publish, small_fs):
    """The spool directory turns read-only while the agent runs (EROFS on
    every file it creates there) -> hold, not loss. `mount -o remount,ro` is
    refused (EBUSY) while the agent has segment files open for writing, so
    the test stacks a read-only bind mount over the spool directory: the
    agent's open files stay writable, every new segment fails with EROFS.
    Small segments make the agent create one every few events."""
    spool = small_fs("16m")
    a = agent(routes=ROUTE, spool_dir=spool,
              sections={"spool": {"sync": "none", "segment_bytes": "1KiB", "reserve": "0"}})
    first = events(100)
    publish.many(first)
    wait_all_ok(gateway, 100)
    r = _run("mount", "--bind", "-o", "ro", spool, spool)
    if r.returncode != 0:
        pytest.skip("cannot stack a read-only bind mount: %s" % r.stdout.strip())
    publish.many(events(300, start=100))
    s = a.wait_stats(lambda s: s["holding"] == 1, timeout=60)
    assert s["durability_failures"] >= 1 and s["dead_lettered"] == 0, s
    assert s["spooled"] < 400, s
    r = _run("umount", spool)   # the read-only layer goes; the rw tmpfs is back
    assert r.returncode == 0, r.stdout
    wait_all_ok(gateway, 400, timeout=120)
    exactly_once(gateway, range(400), allowed=("ALREADY_EXISTS",))
    order_kept(gateway)
    s = a.wait_stats(lambda s: s["backlog"] == 0 and s["holding"] == 0)
    assert s["published"] == 400, s


# ---------------------------------------------------------------- dead letters

def test_dead_letter_on_full_disk_held_then_written(agent, gateway, publish, small_fs):
    """A dead letter that cannot be written is not acknowledged either: at
    ingest (a payload that fails to render) the MQTT ack is held; at the
    gateway (INVALID_ARGUMENT) the spool record is kept. Once space frees,
    both lines are written, and events behind them are delivered."""
    spool = small_fs("1m")
    a = agent(routes=ROUTE, spool_dir=spool, sections={"spool": {"sync": "none", "reserve": "0"}})
    # 1. an event the gateway will reject, spooled while there is room
    gateway.set_unavailable(True)
    publish("dev/d1/ev", {"seq": 0, "key": "kx"})
    a.wait_stats(lambda s: s["spooled"] == 1)
    fill(spool)
    gateway.fail_next("INVALID_ARGUMENT", details="bad variables")
    gateway.set_unavailable(False)
    util.wait_until(lambda: gateway.requests(status="INVALID_ARGUMENT"), 30,
                    what="the gateway rejected seq 0")
    # 2. an event that fails to render (no "key"), then a good one behind it
    publish("dev/d2/ev", {"seq": 1})
    publish("dev/d3/ev", {"seq": 2, "key": "k2"}, timeout=30)
    s = a.wait_stats(lambda s: s["holding"] == 1, timeout=30)
    assert s["dead_lettered"] == 0 and s["backlog"] == 1, s
    assert a.dead_letters() == []
    a.wait_log("cannot write dead-letter file")
    os.unlink(os.path.join(spool, "filler"))
    s = a.wait_stats(lambda s: s["dead_lettered"] == 2 and s["holding"] == 0
                     and s["backlog"] == 0, timeout=60)
    dead = a.dead_letters()
    assert sorted(d["status"] for d in dead) == ["INVALID_ARGUMENT", "RENDER"], dead
    assert {json.loads(d["payload"])["seq"] for d in dead} == {0, 1}
    wait_all_ok(gateway, 1)
    assert {json.loads(util.field(r, "variables"))["seq"]
            for r in gateway.requests(status="OK")} == {2}
    with open(os.path.join(spool, "dead-letters.jsonl"), "rb") as f:
        raw = f.read()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 2, raw[-200:]


def test_dead_letters_bounded_and_rotated(agent, gateway, publish):
    """Three 700 kB payloads that fail to render (no key) are stored as
    reason-only lines with their size, never as 700 kB lines; many small
    ones rotate the file, within dead_letter_max_bytes x dead_letter_max_files."""
    a = agent(routes=ROUTE, sections={"forward": {"dead_letter_max_bytes": "8KiB",
                                                  "dead_letter_max_files": "3"}})
    for i in range(3):
        publish("dev/d1/ev", {"seq": -i, "pad": "y" * 700000})
    a.wait_stats(lambda s: s["dead_lettered"] == 3, timeout=60)
    big = a.dead_letters()
    assert len(big) == 3
    for d in big:
        assert d["payload_omitted"] is True and d["payload_size"] > 700000, d
        assert "payload" not in d and d["status"] == "RENDER"
    assert os.path.getsize(a.dead_letter_path) < 8192
    for i in range(60):
        publish("dev/d1/ev", {"seq": i, "pad": "z" * 200})
    s = a.wait_stats(lambda s: s["dead_lettered"] == 63, timeout=60)
    assert s["dead_letters_rotated"] >= 2, s
    names = sorted(f for f in os.listdir(a.spool_dir) if f.startswith("dead-letters.jsonl"))
    assert names == ["dead-letters.jsonl", "dead-letters.jsonl.1", "dead-letters.jsonl.2"], names
    sizes = [os.path.getsize(os.path.join(a.spool_dir, f)) for f in names]
    assert all(0 < z <= 8192 for z in sizes), sizes
    newest = a.dead_letters()
    assert json.loads(newest[-1]["payload"])["seq"] == 59
    a.wait_log("rotated")


def test_stop_while_holding_exits_without_ack(agent, gateway, publish, small_fs):
    """SIGTERM while an event is held: the agent exits promptly without
    acknowledging it; the broker hands it to the next run, which delivers it."""
    spool = small_fs("1m")
    a = agent(routes=ROUTE, spool_dir=spool, sections={"spool": {"sync": "none", "reserve": "0"}})
    publish("dev/d1/ev", {"seq": 0, "key": "k0"})
    wait_all_ok(gateway, 1)
    fill(spool)
    # tmpfs allocates whole pages: 8 kB cannot fit in the last one
    publish("dev/d1/ev", {"seq": 1, "key": "k0", "pad": "p" * 8192})
    a.wait_stats(lambda s: s["holding"] == 1, timeout=30)
    assert a.stop(timeout=10) == 0
    assert "exiting without acknowledging the message in hand" in a.run_log()
    assert len(gateway.requests(status="OK")) == 1
    os.unlink(os.path.join(spool, "filler"))
    a.start()
    wait_all_ok(gateway, 2)
    exactly_once(gateway, range(2))
    s = a.wait_stats(lambda s: s["backlog"] == 0)
    assert s["received"] == 1 and s["holding"] == 0, s
