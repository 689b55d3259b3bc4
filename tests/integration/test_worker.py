"""The agent as a Zeebe job worker (issue 13): jobs created in the stand-in
gateway become MQTT commands; a simulated device (paho) receives them and
replies; the job ends as Zeebe would record it."""

import json
import re
import threading
import time
import urllib.request
import uuid

import pytest

import util

BIG = 1 << 53   # the stand-in's job keys start above this: not exact as doubles


class Device:
    """A paho client subscribed to FILTER; records commands; REPLY(topic,
    payload) -> (reply_topic, reply_payload) or None answers them."""

    def __init__(self, port, filter, reply=None):
        import paho.mqtt.client as mqtt
        self.got = []
        self.reply = reply
        self.cond = threading.Condition()
        self.client = mqtt.Client(client_id="dev-" + uuid.uuid4().hex[:10], clean_session=True)
        ready = threading.Event()

        def on_connect(c, u, f, rc):
            c.subscribe(filter, qos=1)

        def on_message(c, u, m):
            with self.cond:
                self.got.append((m.topic, m.payload))
                self.cond.notify_all()
            if self.reply:
                r = self.reply(m.topic, m.payload)
                if r:
                    c.publish(r[0], r[1] if isinstance(r[1], (bytes, str)) else json.dumps(r[1]), qos=1)
        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda c, u, mid, q: ready.set()
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert ready.wait(10), "device could not subscribe"

    def wait(self, n, timeout=15.0):
        end = time.monotonic() + timeout
        with self.cond:
            while len(self.got) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise util.Timeout("device got %d of %d command(s): %s" % (len(self.got), n, self.got))
                self.cond.wait(left)
            return list(self.got)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device(broker):
    made = []

    def make(filter="plant/#", reply=None):
        d = Device(broker.port, filter, reply)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()


def worker_ini(name="valve", **kw):
    body = {
        "job_type": "valve-command",
        "topic": "plant/{/variables/deviceId}/cmd/{/key}",
        "max_jobs_active": 4,
        "timeout": "60s",
        "poll_timeout": "2s",
        "retry_backoff": "1s",
    }
    body.update(kw)
    return "[worker %s]\n" % name + "".join("%s = %s\n" % (k, v) for k, v in body.items() if v is not None)


def reply_to(topic):
    return topic.replace("/cmd/", "/reply/")


def fails(gateway, key):
    return [r for r in gateway.requests("FailJob", status="OK") if r["jobKey"] == key]


# ---------------------------------------------------------------- publish mode

@pytest.mark.parametrize("qos", [1, 0])
def test_publish_mode_completes_on_puback(agent, gateway, device, qos):
    dev = device()
    a = agent(extra_ini=worker_ini(
        qos=qos, payload='{{"cmd":"{/customHeaders/command}","job":"{/key}","open":{/variables/open}}}',
        fetch_variables="deviceId, open", tenant_ids="<default>"))
    key = gateway.create_job("valve-command", {"deviceId": "valve7", "open": True, "other": 1},
                             headers={"command": "open"})
    assert key > BIG
    topic, payload = dev.wait(1)[0]
    assert topic == "plant/valve7/cmd/%d" % key
    assert json.loads(payload) == {"cmd": "open", "job": str(key), "open": True}
    job = gateway.wait_job(key, lambda j: j["state"] == "COMPLETED")
    assert job["activations"] == 1
    act = [r for r in gateway.requests("ActivateJobs") if r["jobs"]][0]
    assert act["worker"].startswith("m2z-test-") and act["timeout"] == 60000
    assert act["fetchVariable"] == ["deviceId", "open"] and act["tenantIds"] == ["<default>"]
    assert act["requestTimeout"] == 2000 and act["maxJobsToActivate"] == 4
    assert act["metadata"]["authorization"].startswith("Bearer ")
    assert "valve-command" in a.log()


# ---------------------------------------------------------------- request/reply

def test_request_reply_completes_with_the_reply(agent, gateway, device):
    answers = {"valve1": {"status": "ok", "position": 42}, "valve2": "done", "valve3": b"\xff\x00\x01"}

    def reply(topic, payload):
        return reply_to(topic), answers[topic.split("/")[1]]
    device(reply=reply)
    agent(extra_ini=worker_ini(mode="request_reply", reply_topic="plant/{/variables/deviceId}/reply/{/key}",
                               reply_timeout="10s"))
    k1 = gateway.create_job("valve-command", {"deviceId": "valve1"})
    k2 = gateway.create_job("valve-command", {"deviceId": "valve2"})
    k3 = gateway.create_job("valve-command", {"deviceId": "valve3"})
    j1 = gateway.wait_job(k1, lambda j: j["state"] == "COMPLETED")
    j2 = gateway.wait_job(k2, lambda j: j["state"] == "COMPLETED")
    j3 = gateway.wait_job(k3, lambda j: j["state"] == "COMPLETED")
    assert j1["variables"]["position"] == 42 and j1["variables"]["status"] == "ok"
    assert j2["variables"]["reply"] == "done"
    assert j3["variables"]["reply"] == "/wAB" and j3["variables"]["replyEncoding"] == "base64"


def test_reply_timeout_fails_with_retries_minus_one(agent, gateway, device):
    dev = device()
    agent(extra_ini=worker_ini(mode="request_reply", reply_topic="plant/{/variables/deviceId}/reply/{/key}",
                               reply_timeout="1s", retry_backoff="30s"))
    key = gateway.create_job("valve-command", {"deviceId": "valve3"}, retries=3)
    dev.wait(1)
    job = gateway.wait_job(key, lambda j: j["history"][-1:] == ["FailJob"])
    f = fails(gateway, key)[0]
    assert f["retries"] == 2 and f["retryBackOff"] == 30000
    assert "no reply on plant/valve3/reply/%d" % key in f["errorMessage"]
    assert job["retries"] == 2


def test_reply_timeout_can_throw_a_bpmn_error(agent, gateway, device):
    device()
    agent(extra_ini=worker_ini(mode="request_reply", reply_topic="plant/{/variables/deviceId}/reply/{/key}",
                               reply_timeout="500ms", timeout_error_code="DEVICE_SILENT"))
    key = gateway.create_job("valve-command", {"deviceId": "valve4"})
    job = gateway.wait_job(key, lambda j: j["state"] == "ERROR_THROWN")
    assert job["errorCode"] == "DEVICE_SILENT"


def test_error_reply_throws_bpmn_error(agent, gateway, device):
    device(reply=lambda t, p: (reply_to(t), {"status": "error", "message": "valve stuck at 40%"}))
    agent(extra_ini=worker_ini(mode="request_reply", reply_topic="plant/{/variables/deviceId}/reply/{/key}",
                               error_pointer="/status", error_value="error", error_code="VALVE_STUCK",
                               error_message_pointer="/message"))
    key = gateway.create_job("valve-command", {"deviceId": "valve5"})
    job = gateway.wait_job(key, lambda j: j["state"] == "ERROR_THROWN")
    assert job["errorCode"] == "VALVE_STUCK"
    assert job["error"] == "valve stuck at 40%"


# ---------------------------------------------------------------- faults

def test_broker_down_fails_jobs_back_with_retries_unchanged(agent, gateway, device, broker):
    dev = device()
    a = agent(extra_ini=worker_ini(mode="request_reply", reply_topic="plant/{/variables/deviceId}/reply/{/key}",
                                   reply_timeout="25s", retry_backoff="2s"))
    key = gateway.create_job("valve-command", {"deviceId": "valve6"}, retries=3)
    dev.wait(1)
    broker.stop()
    t0 = time.monotonic()
    job = gateway.wait_job(key, lambda j: "FailJob" in j["history"], timeout=10)
    assert time.monotonic() - t0 < 5, "jobs must be failed back promptly, not left to time out"
    f = fails(gateway, key)[0]
    assert f["retries"] == 3 and f["retryBackOff"] == 2000
    assert "connection lost" in f["errorMessage"]
    # No new activation while the broker is away. The long poll that was
    # open when it left may still hand over a job: that one goes straight
    # back, retries unchanged.
    other = gateway.create_job("valve-command", {"deviceId": "valve8"})
    time.sleep(3)   # longer than the back-off: only the absent broker holds the jobs back
    polls = gateway.requests("ActivateJobs", status=None)
    assert gateway.job(other)["activations"] <= 1, polls
    assert gateway.job(key)["activations"] == 1, polls
    assert gateway.job(other)["state"] == "ACTIVATABLE"
    assert all(f["retries"] == 3 for f in fails(gateway, other))
    n = len(polls)
    time.sleep(1)
    assert len(gateway.requests("ActivateJobs", status=None)) == n, "polled while the broker is away"
    broker.start()
    gateway.wait_job(other, lambda j: j["activations"] == 1, timeout=20)
    gateway.wait_job(key, lambda j: j["activations"] == 2, timeout=20)
    assert job["retries"] == 3
    a.wait_log(r"failing back 1 job", timeout=1, run_only=True)


def test_sigkill_with_jobs_in_hand_republishes_after_job_timeout(agent, gateway, device):
    answer = threading.Event()
    dev = device(reply=lambda t, p: (reply_to(t), {"ok": True}) if answer.is_set() else None)
    a = agent(extra_ini=worker_ini(mode="request_reply", reply_topic="plant/{/variables/deviceId}/reply/{/key}",
                                   reply_timeout="2500ms", timeout="3s"))
    key = gateway.create_job("valve-command", {"deviceId": "valve9"})
    first = dev.wait(1)[0]
    a.kill()
    answer.set()
    a.start()
    got = dev.wait(2, timeout=20)
    assert got[1][0] == first[0] == "plant/valve9/cmd/%d" % key, "same job key: the device can spot the repeat"
    job = gateway.wait_job(key, lambda j: j["state"] == "COMPLETED")
    assert job["activations"] == 2 and "TIMED_OUT" in job["history"]


def test_sigterm_fails_jobs_in_hand_back(agent, gateway, device):
    dev = device()
    a = agent(extra_ini=worker_ini(mode="request_reply", reply_topic="plant/{/variables/deviceId}/reply/{/key}",
                                   reply_timeout="25s"))
    keys = [gateway.create_job("valve-command", {"deviceId": "v%d" % i}, retries=2) for i in range(3)]
    dev.wait(3)
    assert a.stop() == 0
    for k in keys:
        f = fails(gateway, k)
        assert len(f) == 1 and f[0]["retries"] == 2 and f[0]["retryBackOff"] == 0, f
        assert gateway.job(k)["state"] == "ACTIVATABLE"


def test_rejected_token_on_completion_is_renewed(agent, gateway, device, token_server):
    device()
    gateway.fail_next("UNAUTHENTICATED", 1, method="CompleteJob",
                      details="Failed to parse bearer token, see cause for details")
    a = agent(extra_ini=worker_ini())
    key = gateway.create_job("valve-command", {"deviceId": "valve12"})
    gateway.wait_job(key, lambda j: j["state"] == "COMPLETED")
    tries = [r for r in gateway.requests("CompleteJob", status=None) if r["jobKey"] == key]
    assert [r["status"] for r in tries] == ["UNAUTHENTICATED", "OK"]
    assert tries[0]["metadata"]["authorization"] != tries[1]["metadata"]["authorization"], \
        "the rejected token is dropped and a new one fetched"
    assert util.CLIENT_SECRET not in a.log()


def test_completion_retried_on_unavailable_and_not_found_logged_once(agent, gateway, device):
    device()
    gateway.fail_next("UNAVAILABLE", 2, method="CompleteJob")
    a = agent(extra_ini=worker_ini())
    key = gateway.create_job("valve-command", {"deviceId": "valve10"})
    gateway.wait_job(key, lambda j: j["state"] == "COMPLETED")
    tries = [r for r in gateway.requests("CompleteJob", status=None) if r["jobKey"] == key]
    assert [r["status"] for r in tries] == ["UNAVAILABLE", "UNAVAILABLE", "OK"]

    gateway.fail_next("NOT_FOUND", 1, method="CompleteJob")
    gone = gateway.create_job("valve-command", {"deviceId": "valve11"})
    a.wait_log(r"job %d no longer exists" % gone, timeout=15)
    time.sleep(0.5)
    assert len(re.findall(r"job %d no longer exists" % gone, a.run_log())) == 1
    assert len([r for r in gateway.requests("CompleteJob", status=None) if r["jobKey"] == gone]) == 1


# ---------------------------------------------------------------- topic safety

@pytest.mark.parametrize("value", ["a/b", "+", "#", "x#", ""])
def test_unsafe_topic_value_fails_the_job(agent, gateway, device, value):
    dev = device(filter="#")
    agent(extra_ini=worker_ini())
    key = gateway.create_job("valve-command", {"deviceId": value})
    job = gateway.wait_job(key, lambda j: j["state"] == "INCIDENT")
    f = fails(gateway, key)[0]
    assert f["retries"] == 0
    assert "free of '/', '+' and '#'" in f["errorMessage"]
    ok = gateway.create_job("valve-command", {"deviceId": "fine"})
    gateway.wait_job(ok, lambda j: j["state"] == "COMPLETED")
    # The broker acknowledges the agent before it delivers to the device. An
    # unsafe command would have been published before this one (same
    # client, in order), so the first message settles it.
    dev.wait(1)
    assert [t for t, _ in dev.got if t.startswith("plant/")] == ["plant/fine/cmd/%d" % ok]
    assert json.loads(dev.got[-1][1]) == {"deviceId": "fine"}   # payload defaults to {/variables}
    assert job["retries"] == 0


@pytest.mark.parametrize("value,expect", [
    ("a\u0000b", "\\u0000 (NUL), which cannot be passed on unchanged"),
    ("x\nFORGED line", "without control characters"),
    ("del\x7f", "without control characters"),
    ("L" * 70000, "above MQTT's limit of 65535 bytes for a topic"),
])
def test_topic_the_broker_would_refuse_fails_the_job_once(agent, gateway, device, value, expect):
    dev = device(filter="#")
    a = agent(extra_ini=worker_ini())
    key = gateway.create_job("valve-command", {"deviceId": value})
    job = gateway.wait_job(key, lambda j: j["state"] == "INCIDENT")
    f = fails(gateway, key)
    assert len(f) == 1 and f[0]["retries"] == 0 and job["retries"] == 0
    assert expect in f[0]["errorMessage"]
    ok = gateway.create_job("valve-command", {"deviceId": "fine"})
    gateway.wait_job(ok, lambda j: j["state"] == "COMPLETED")
    dev.wait(1)
    assert [t for t, _ in dev.got if t.startswith("plant/")] == ["plant/fine/cmd/%d" % ok]
    assert not any(l.startswith("FORGED") for l in a.log().splitlines())


def test_topic_the_mqtt_library_refuses_fails_the_job_once(agent, gateway, device):
    device(filter="#")
    a = agent(extra_ini=worker_ini(topic="plant/BADBYTE/{/key}"), start=False)
    with open(a.conf_path, "rb") as f:
        ini = f.read()
    with open(a.conf_path, "wb") as f:
        f.write(ini.replace(b"BADBYTE", b"\xff"))        # invalid UTF-8 in a literal level
    a.start()
    key = gateway.create_job("valve-command", {"deviceId": "v1"})
    gateway.wait_job(key, lambda j: j["state"] == "INCIDENT")
    f = fails(gateway, key)
    assert len(f) == 1 and f[0]["retries"] == 0
    assert "the MQTT library refused the command" in f[0]["errorMessage"]
    assert "not connected" not in a.log()


def test_missing_variable_and_big_payload_fail_the_job(agent, gateway, device):
    device()
    agent(extra_ini=worker_ini(payload="{/variables/blob}", max_payload="1KiB"))
    k1 = gateway.create_job("valve-command", {"blob": "x"})
    k2 = gateway.create_job("valve-command", {"deviceId": "v", "blob": "x" * 2000})
    gateway.wait_job(k1, lambda j: j["state"] == "INCIDENT")
    gateway.wait_job(k2, lambda j: j["state"] == "INCIDENT")
    assert "/variables/deviceId not found" in fails(gateway, k1)[0]["errorMessage"]
    assert "above max_payload" in fails(gateway, k2)[0]["errorMessage"]


@pytest.mark.parametrize("body,expect", [
    ({"topic": "{/variables/deviceId}/cmd"}, "topic: must start with a fixed topic level"),
    ({"topic": "plant/+/cmd/{/key}"}, "'+' and '#' are not allowed"),
    ({"topic": "plant/{topic}"}, "only {/json/pointer} expressions"),
    ({"mode": "request_reply", "reply_topic": "plant/{/variables/deviceId}/reply"},
     "must contain {/key} as a whole level"),
    ({"mode": "request_reply"}, "mode = request_reply needs reply_topic"),
    ({"error_pointer": "/status"}, "error_pointer needs error_code"),
])
def test_bad_worker_config_is_a_file_line_error(tmp_path, body, expect):
    ini = tmp_path / "w.ini"
    ini.write_text("[mqtt]\nhost = 127.0.0.1\n\n" + worker_ini(**body))
    r = util.run_cli(["--check", "-c", str(ini)])
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert re.search(r"w\.ini:\d+: \[worker valve\]", err), err
    assert expect in err


def test_job_to_command_latency(agent, gateway, device):
    """Long polling hands a new job over at once: measure job created ->
    command at the device -> job completed, for 100 jobs one after another
    (run with -s to see the numbers)."""
    dev = device()
    agent(extra_ini=worker_ini(max_jobs_active=32))
    to_cmd, to_done = [], []
    for i in range(100):
        t0 = time.monotonic()
        key = gateway.create_job("valve-command", {"deviceId": "v%d" % i})
        dev.wait(i + 1)
        t1 = time.monotonic()
        gateway.wait_job(key, lambda j: j["state"] == "COMPLETED")
        to_cmd.append(t1 - t0)
        to_done.append(time.monotonic() - t0)
    to_cmd.sort()
    to_done.sort()
    print("\njob -> command: median %.1f ms, max %.1f ms; job -> completed: median %.1f ms, max %.1f ms"
          % (to_cmd[50] * 1e3, to_cmd[-1] * 1e3, to_done[50] * 1e3, to_done[-1] * 1e3))
    assert to_cmd[50] < 1.0, "a new job must not wait for a polling interval"


def test_worker_counters_in_metrics(agent, gateway, device):
    """Issue 13: the job counters reach /metrics (and the status document,
    built from the same snapshot)."""
    port = util.free_port()
    device(reply=lambda topic, payload: (reply_to(topic), {"status": "ok"}))
    agent(extra_ini=worker_ini(mode="request_reply", reply_topic="plant/{/variables/deviceId}/reply/{/key}",
                               reply_timeout="10s"),
          sections={"metrics": {"listen": "127.0.0.1:%d" % port}})
    key = gateway.create_job("valve-command", {"deviceId": "valve1"})
    gateway.wait_job(key, lambda j: j["state"] == "COMPLETED")

    def scraped():
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode()
        return text if "\nmqtt2zeebe_jobs_completed_total 1\n" in text else None
    text = util.wait_until(scraped, 10, what="jobs_completed_total 1 in /metrics")
    assert "\nmqtt2zeebe_jobs_activated_total 1\n" in text, text
    assert "\nmqtt2zeebe_jobs_failed_total 0\n" in text, text
