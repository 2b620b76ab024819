"""The systemd units (checked by systemd's own tools) and the install script."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
MAX_EXPOSURE = 2.5


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.fail("systemd-analyze missing: scripts/setup.sh installs Debian's systemd package")
    return found


def install(destdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DESTDIR": str(destdir), "EDGED_SKIP_VENV": "1"}
    return subprocess.run([str(ROOT / "scripts" / "install.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    out = {}
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        out[str(path.relative_to(root))] = (mode, path.read_bytes() if path.is_file() else None)
    return out


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory) -> Path:
    """An installed tree plus what `verify --root` needs of the OS: systemd's own units and
    /usr/bin/install (edged-credentials@), and a stand-in for the venv's entry point (the venv
    step is skipped here)."""
    root = tmp_path_factory.mktemp("root")
    proc = install(root)
    assert proc.returncode == 0, proc.stderr
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/usr/bin/install", root / "usr/bin/install")
    entry = root / "opt/edged/venv/bin/edged"
    entry.parent.mkdir(parents=True)
    entry.write_text("#!/bin/sh\n")
    entry.chmod(0o755)
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run([analyze(), "verify", "--man=no", f"--root={root}", *units],
                          capture_output=True, text=True, timeout=60)


def test_units_pass_systemd_analyze_verify(scratch_root):
    proc = verify(scratch_root, "edged.service", "edged@cam1.service",
                  "edged-credentials@cam1.service")
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_verify_catches_a_broken_unit(scratch_root, tmp_path):
    """The check above can fail: the same tool rejects a unit with a bad setting."""
    broken = scratch_root / "etc/systemd/system/edged-broken.service"
    broken.write_text((UNITS / "edged.service").read_text()
                      .replace("ExecStart=/opt/edged/venv/bin/edged",
                               "ExecStart=/opt/edged/venv/bin/missing"))
    try:
        proc = verify(scratch_root, "edged-broken.service")
    finally:
        broken.unlink()
    assert proc.returncode != 0 and "missing" in proc.stderr


@pytest.mark.parametrize("unit", ["edged.service", "edged@cam1.service"])
def test_security_exposure_is_at_most_2_5_and_documented(scratch_root, unit):
    proc = subprocess.run([analyze(), "security", "--offline=yes", f"--root={scratch_root}",
                           "--no-pager", unit], capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    score = float(match.group(1))
    assert score <= MAX_EXPOSURE, proc.stdout
    documented = (ROOT / "docs" / "systemd.md").read_text()
    assert f"exposure level of **{score}**" in documented


def test_unit_has_the_required_settings():
    text = (UNITS / "edged.service").read_text()
    for line in ["Type=notify", "WatchdogSec=30", "Restart=on-failure",
                 "ExecReload=/opt/edged/venv/bin/edged check-config -c /etc/edged/config.yaml\n"
                 "ExecReload=/opt/edged/venv/bin/edged reload-wait --pid $MAINPID",
                 "RestartPreventExitStatus=2\n", "StartLimitIntervalSec=300\n",
                 "StartLimitBurst=5\n", "RuntimeDirectory=edged\n",
                 "DynamicUser=yes", "StateDirectory=edged\n",
                 "ConfigurationDirectory=edged", "LoadCredential=mqtt:/etc/edged/credentials",
                 "SupplementaryGroups=video plugdev", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service",
                 "DeviceAllow=char-video4linux rw", "DeviceAllow=char-usb_device rw",
                 "ExecStart=/opt/edged/venv/bin/edged run -c /etc/edged/config.yaml"]:
        assert line in text, line
    assert re.search(r"^RestrictAddressFamilies=.*AF_INET6", text, re.M)
    # Nothing that hides what LiteRT needs (ProcSubset=pid hides /proc/cpuinfo: no XNNPACK).
    assert not re.search(r"^ProcSubset=", text, re.M)
    template = (UNITS / "edged@.service").read_text()
    assert "-c /etc/edged/%i.yaml" in template
    # DynamicUser state directories must not nest: edged-NAME beside edged, not edged/NAME.
    assert "StateDirectory=edged-%i\n" in template and "RuntimeDirectory=edged-%i\n" in template
    assert "Requires=edged-credentials@%i.service" in template
    assert not re.search(r"^ProcSubset=", template, re.M)


def test_start_limit_trips_with_the_configured_restart_sec():
    """systemd counts every (re)start in StartLimitIntervalSec; with RestartSec between
    restarts, StartLimitBurst starts must fit in the interval, for a crash loop and for a
    watchdog loop (a start, WatchdogSec without pings, RestartSec), or the limit never trips."""
    for unit in ("edged.service", "edged@.service"):
        text = (UNITS / unit).read_text()
        value = {k: int(re.search(rf"^{k}=(\d+)$", text, re.M).group(1))
                 for k in ("RestartSec", "StartLimitIntervalSec", "StartLimitBurst",
                           "WatchdogSec")}
        burst, interval = value["StartLimitBurst"], value["StartLimitIntervalSec"]
        assert burst * value["RestartSec"] < interval
        assert burst * (value["RestartSec"] + value["WatchdogSec"]) < interval
        assert re.search(r"^\[Unit\]\n(?:.*\n)*?StartLimitBurst=", text, re.M)  # [Unit] key


def test_credentials_helper_unit_makes_the_instance_folder(tmp_path):
    """edged-credentials@NAME runs the very command in its ExecStart= (here with a scratch
    prefix): it makes credentials/NAME with mode 0700, and running it again is fine."""
    text = (UNITS / "edged-credentials@.service").read_text()
    command = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    command = command.replace("%i", "line2").replace("/etc/edged", str(tmp_path / "etc/edged"))
    for _ in range(2):
        subprocess.run(command.split(), check=True, timeout=10)
    made = tmp_path / "etc/edged/credentials/line2"
    assert made.is_dir() and stat.S_IMODE(made.stat().st_mode) == 0o700


def test_udev_rule_covers_both_coral_usb_ids():
    rules = (UNITS / "60-edged-coral.rules").read_text()
    ids = set(re.findall(r'ATTRS\{idVendor\}=="(\w+)", ATTRS\{idProduct\}=="(\w+)"', rules))
    assert ids == {("1a6e", "089a"), ("18d1", "9302")}
    assert rules.count('GROUP="plugdev"') == 2
    if shutil.which("udevadm"):
        proc = subprocess.run(["udevadm", "verify", str(UNITS / "60-edged-coral.rules")],
                              capture_output=True, text=True)
        # `udevadm verify` exists from systemd 254; older ones say unknown command.
        if "Unknown command" not in proc.stderr and "unrecognized" not in proc.stderr:
            assert proc.returncode == 0, proc.stderr


def test_install_twice_gives_the_same_tree_and_keeps_the_config(tmp_path):
    dest = tmp_path / "dest"
    first = install(dest)
    assert first.returncode == 0, first.stderr
    one = tree(dest)
    second = install(dest)
    assert second.returncode == 0, second.stderr
    assert tree(dest) == one
    for path in ["etc/systemd/system/edged.service", "etc/systemd/system/edged@.service",
                 "etc/udev/rules.d/60-edged-coral.rules", "etc/edged/config.yaml",
                 "opt/edged/share/models/demo/model.tflite",
                 "opt/edged/share/doc/grafana-dashboard.json"]:
        assert path in one, path
    assert one["etc/edged/credentials"][0] == 0o700
    assert "etc/systemd/system/edged-credentials@.service" in one
    config = (dest / "etc/edged/config.yaml").read_text()
    assert "path: /opt/edged/share/models/demo/model.tflite" in config
    # An operator's edited config survives a re-install.
    (dest / "etc/edged/config.yaml").write_text("node_id: mine\n")
    assert install(dest).returncode == 0
    assert (dest / "etc/edged/config.yaml").read_text() == "node_id: mine\n"
    # Uninstall removes the program and units, keeps config; twice is fine.
    for _ in range(2):
        proc = install(dest, "--uninstall")
        assert proc.returncode == 0, proc.stderr
    left = set(tree(dest))
    assert "etc/edged/config.yaml" in left
    assert not any(p.startswith("opt/edged") or p.endswith(".service") or p.endswith(".rules")
                   for p in left), left


def test_installed_config_is_valid(tmp_path):
    """The config the installer writes passes check-config once the demo files are in place."""
    dest = tmp_path / "dest"
    assert install(dest).returncode == 0
    text = (dest / "etc/edged/config.yaml").read_text().replace("/opt/edged",
                                                                 str(dest / "opt/edged"))
    (dest / "c.yaml").write_text(text)
    from edged.config import load_config

    cfg = load_config(dest / "c.yaml")
    assert cfg.models["default"].path.startswith(str(dest / "opt/edged/share/models/demo"))
    # A service keeps running: the demo camera loops its video, paced like a camera.
    demo = cfg.cameras["conveyor"]
    assert demo.loop and demo.realtime and demo.enabled
    # ... while the example itself keeps the documented defaults.
    example = load_config(ROOT / "config.example.yaml")
    assert not example.cameras["conveyor"].loop and not example.cameras["conveyor"].realtime


def test_bad_install_argument_is_one_clear_line(tmp_path):
    proc = install(tmp_path, "--bogus")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("usage:")


def test_make_install_uses_destdir(tmp_path):
    if not shutil.which("make"):
        pytest.skip("make not installed")
    proc = subprocess.run(["make", "-s", "install", f"DESTDIR={tmp_path}"], cwd=ROOT,
                          env={**os.environ, "EDGED_SKIP_VENV": "1"}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "etc/systemd/system/edged.service").is_file()
