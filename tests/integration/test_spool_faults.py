"""The spool on damaged storage, end to end: the real binary, broker,
gateway and token endpoint. A bit flipped in a spooled event loses that
event only (logged with its sequence, counted as corrupt=), every other one
is delivered after the restart; a spool path that is a file is a clear
start-up error. (Bit flips at every offset, ack logs, lost segments, disk
full and the reserve are in tests/unit/test_spool.c.)"""
import glob
import json
import os
import struct

import util

ROUTE = {"ev": {"topic": "dev/+/ev", "message_name": "device-event",
                "correlation_key": "{/key}"}}


def _frames(path):
    """(offset, length) of each frame of a segment file."""
    data = open(path, "rb").read()
    out, off = [], 0
    while off + 8 <= len(data):
        n = struct.unpack_from("<I", data, off)[0]
        out.append((off, 8 + n))
        off += 8 + n
    return out


def _seqs_ok(gw):
    return sorted(json.loads(util.field(r, "variables"))["seq"]
                  for r in gw.requests() if util.field(r, "status") == "OK")


def test_flipped_bit_loses_one_event_only(agent, gateway, publish):
    n = 30
    a = agent(routes=ROUTE, sections={"spool": {"sync": "always"}})
    gateway.set_unavailable(True)
    publish.many([("dev/d%d/ev" % (i % 3), {"seq": i, "key": "k%d" % (i % 3)})
                  for i in range(n)])
    a.wait_stats(lambda s: s["spooled"] == n)
    a.stop()
    segs = sorted(glob.glob(os.path.join(a.spool_dir, "*.seg")))
    assert len(segs) == 1
    frames = _frames(segs[0])
    assert len(frames) == n
    off, length = frames[10]
    with open(segs[0], "r+b") as f:            # one bit of event 10's payload
        f.seek(off + length - 5)
        b = f.read(1)[0]
        f.seek(off + length - 5)
        f.write(bytes([b ^ 0x04]))
    gateway.set_unavailable(False)
    a.start()
    util.wait_until(lambda: len(_seqs_ok(gateway)) == n - 1, 60,
                    what="%d events answered OK" % (n - 1))
    assert _seqs_ok(gateway) == [i for i in range(n) if i != 10]
    s = a.wait_stats(lambda s: s["backlog"] == 0)
    assert s["corrupt"] == 1, s
    assert "1 records lost (seq 11..11)" in a.run_log()
    # Reported once: a restart finds nothing new and sends nothing again.
    a.stop()
    a.start()
    s = a.wait_stats(lambda s: s["backlog"] == 0)
    assert s["corrupt"] == 0, s
    assert len(_seqs_ok(gateway)) == n - 1


def test_spool_directory_is_a_file(agent, tmp_path):
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    a = agent(routes=ROUTE, spool_dir=str(path), start=False)
    a.start(wait_ready=False)
    rc = a.wait_exit(30)
    log = a.log()
    assert rc != 0, log
    assert "spool.directory %s is not a directory" % path in log, log
    assert "File exists" not in log, log


def test_spool_directory_deleted_under_the_agent_holds_the_acks(agent, gateway, publish):
    """rm -rf of the spool directory while running: nothing is acknowledged
    into the deleted files; after kill -9 and a restart every event arrives."""
    import shutil
    import signal
    n = 20
    a = agent(routes=ROUTE)
    gateway.set_unavailable(True)
    shutil.rmtree(a.spool_dir)
    # An idle agent notices at the next append (it does not poll the disk
    # while idle); that append and every later one is held, not acknowledged.
    publish.many([("dev/d%d/ev" % (i % 3), {"seq": i, "key": "k%d" % (i % 3)}) for i in range(n)])
    a.wait_log(r"ERROR \[spool\] the spool directory .* was deleted under the running agent", timeout=10)
    a.wait_log(r"holding the MQTT acknowledgement", timeout=10)
    assert a.run_log().count("was deleted under the running agent") == 1
    a.send_signal(signal.SIGKILL)
    a.wait_exit()
    gateway.set_unavailable(False)
    a.start()
    util.wait_until(lambda: _seqs_ok(gateway) == list(range(n)), timeout=30,
                    what="all %d events after the restart" % n)
