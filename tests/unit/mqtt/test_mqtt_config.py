"""Config errors of the MQTT keys: one line naming the key, exit 2."""

from __future__ import annotations

from tests.conftest import demo_config, edged, write_config


def _check(tmp_path, **mqtt) -> str:  # noqa: ANN001, ANN003
    cfg = demo_config(1883)
    cfg["mqtt"].update(mqtt)
    proc = edged("check-config", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    return proc.stderr


def test_two_password_sources_are_refused(tmp_path):
    err = _check(tmp_path, username="u", password_env="A", password_credential="b")
    assert "mqtt: give only one of password_env, password_credential" in err


def test_password_without_username_is_refused(tmp_path):
    assert "password_env needs username" in _check(tmp_path, password_env="A")


def test_key_without_certificate_and_bad_smoothing(tmp_path):
    assert "key_file needs cert_file" in _check(tmp_path, tls={"key_file": "k.pem"})
    cfg = demo_config(1883)
    cfg["cameras"]["conveyor"]["smoothing"] = {"method": "vote"}
    proc = edged("check-config", "-c", str(write_config(tmp_path / "d.yaml", cfg)))
    assert proc.returncode == 2 and "cameras.conveyor.smoothing.method" in proc.stderr


def test_unknown_outbox_key(tmp_path):
    assert "mqtt.outbox.size: unknown key" in _check(tmp_path, outbox={"size": 3})
