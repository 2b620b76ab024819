"""TLS with a test CA and client certificates (mTLS), and passwords that never reach a log."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import demo_config, edged, start_edged, write_config
from tests.helpers.broker import Mosquitto
from tests.helpers.subscriber import Subscriber
from tests.helpers.tls import make_pki, tls_broker


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_config(port: int, pki, ca) -> dict:  # noqa: ANN001
    cfg = demo_config(port, loop=True, realtime=True)
    cfg["mqtt"]["tls"] = {"ca_file": str(ca), "cert_file": str(pki.client[0]),
                          "key_file": str(pki.client[1])}
    return cfg


def test_mtls_with_test_ca_and_client_certificate(tmp_path, pki):
    broker, tls_port = tls_broker(tmp_path, pki)
    broker.start()
    sub = Subscriber(broker.port).start()
    cfg = write_config(tmp_path / "c.yaml", _tls_config(tls_port, pki, pki.ca))
    proc = start_edged("run", "-c", str(cfg))
    try:
        assert sub.wait_for(lambda: len(sub.on("/result")) >= 5, 20)
        assert [m.json["state"] for m in sub.on("/status")][0] == "online"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        proc.kill()
        sub.stop()
        broker.stop()


def test_wrong_ca_is_a_clear_error_and_retried_not_a_crash(tmp_path, pki):
    broker, tls_port = tls_broker(tmp_path, pki)
    broker.start()
    sub = Subscriber(broker.port).start()
    cfg = write_config(tmp_path / "c.yaml", _tls_config(tls_port, pki, pki.other_ca))
    proc = start_edged("run", "-c", str(cfg))
    try:
        time.sleep(3.5)
        assert proc.poll() is None, "a TLS failure must not stop the daemon"
        assert not sub.on("/result")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        sub.stop()
        broker.stop()
    assert proc.returncode == 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "cannot reach broker" in line]
    assert lines, err
    assert "certificate verify failed" in lines[0] and "mqtt.tls" in lines[0]
    assert "retrying" in lines[0]


def test_insecure_skips_verification_only_when_asked(tmp_path, pki):
    broker, tls_port = tls_broker(tmp_path, pki)
    broker.start()
    sub = Subscriber(broker.port).start()
    cfg = _tls_config(tls_port, pki, pki.other_ca)
    cfg["mqtt"]["tls"]["insecure"] = True
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    try:
        assert sub.wait_for(lambda: len(sub.on("/result")) >= 3, 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        sub.stop()
        broker.stop()


SECRET = "s3cret-Pa55"


@pytest.mark.parametrize("way", ["password_file", "password_env", "password_credential",
                                 "wrong"])
def test_password_from_file_env_or_credential_never_logged(tmp_path, way, monkeypatch):
    import subprocess


    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "edged", SECRET], check=True,
                   capture_output=True)
    # Anonymous clients (the test's subscriber) may connect; a client giving a user name is
    # checked against the password file, so a wrong password is refused.
    broker = Mosquitto(tmp_path, extra_conf=f"user root\npassword_file {pw}\n")
    auth_port = broker.port
    cfg = demo_config(auth_port, loop=True, realtime=True)
    cfg["mqtt"]["username"] = "edged"
    if way in ("password_file", "wrong"):
        (tmp_path / "pw.txt").write_text(SECRET + ("x" if way == "wrong" else "") + "\n")
        cfg["mqtt"]["password_file"] = str(tmp_path / "pw.txt")
    elif way == "password_env":
        monkeypatch.setenv("EDGED_TEST_PW", SECRET)
        cfg["mqtt"]["password_env"] = "EDGED_TEST_PW"
    else:
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "mqtt-password").write_text(SECRET)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        cfg["mqtt"]["password_credential"] = "mqtt-password"
    broker.start()
    sub = Subscriber(broker.port).start()
    path = write_config(tmp_path / "c.yaml", cfg)
    proc = start_edged("run", "-c", str(path), "--log-level", "debug")
    try:
        if way == "wrong":
            time.sleep(2)
            assert not sub.on("/result") and proc.poll() is None
        else:
            assert sub.wait_for(lambda: len(sub.on("/result")) >= 3, 20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        sub.stop()
        broker.stop()
    assert proc.returncode == 0, err
    assert SECRET not in out + err
    if way == "wrong":
        assert "refused the connection" in err


def test_missing_password_env_is_one_clear_line(tmp_path, broker):
    cfg = demo_config(broker.port)
    cfg["mqtt"].update(username="edged", password_env="EDGED_NOT_SET_ANYWHERE")
    proc = edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "edged: mqtt.password_env: the environment variable EDGED_NOT_SET_ANYWHERE is not set")


def test_tls_file_missing_is_a_config_error(tmp_path, broker):
    cfg = demo_config(broker.port)
    cfg["mqtt"]["tls"] = {"ca_file": "nope-ca.pem"}
    proc = edged("check-config", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert proc.returncode == 2
    assert "mqtt.tls.ca_file: file not found" in proc.stderr and "nope-ca.pem" in proc.stderr
