"""Throughput of edged as the installed systemd service against the same run in a shell.

Boots the test tier's Debian 12 root (tests/helpers/nspawn.py: debootstrap once, cached in
/var/cache/edged-test; `systemd-nspawn -b`), runs `make install` inside, then alternates, in
one run, the same config as `systemctl start edged@bench` (every hardening setting of the
unit) and as `/opt/edged/venv/bin/edged run` from a root shell in the same container. Each
round measures edged_frames_processed_total over a window after a warm-up; the video loops and
is read as fast as it decodes (policy every: nothing dropped), so the rate is what the pipeline
can do. Models: the demo, and the shared MobileNet v2 (/work/shared/models) when present.

    python benchmarks/service_vs_shell.py --rounds 3 --seconds 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.nspawn import Container, cannot_boot_reason, debian_root  # noqa: E402
from tests.system.test_real_systemd import wheelhouse  # noqa: E402

SHARED = ROOT.parent / "shared" / "models"
DEMO = "/opt/edged/share/models/demo"
CONFIG = "/etc/edged/bench.yaml"
RATE = """python3 - <<'EOF'
import time, urllib.request
def count():
    text = urllib.request.urlopen('http://127.0.0.1:9108/metrics', timeout=5).read().decode()
    return sum(float(l.rsplit(' ', 1)[1]) for l in text.splitlines()
               if l.startswith('edged_frames_processed_total{'))
deadline = time.monotonic() + 60
while True:
    try:
        if count() > 0:
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        raise SystemExit('no frames within 60 s')
    time.sleep(0.2)
time.sleep(WARM)
c0, t0 = count(), time.monotonic()
time.sleep(WINDOW)
print((count() - c0) / (time.monotonic() - t0))
EOF"""


def config(model: str) -> str:
    if model == "demo":
        spec = f"path: {DEMO}/model.tflite\n    labels: {DEMO}/labels.txt"
    else:
        spec = "path: /shared/imagenet/mobilenet_v2_1.0_224_quant.tflite"
    return (f"node_id: bench\nmqtt:\n  host: 127.0.0.1\nmodels:\n  default:\n    {spec}\n"
            f"    workers: 2\ncameras:\n  conveyor:\n    source: {DEMO}/conveyor.mp4\n"
            "    loop: true\nmetrics:\n  listen: 127.0.0.1:9108\n")


def measure(box: Container, mode: str, warm: float, window: float) -> float:
    rate = RATE.replace("WARM", str(warm)).replace("WINDOW", str(window))
    if mode == "service":
        box.sh("systemctl start edged@bench", timeout=150)
        try:
            return float(box.sh(rate, timeout=window + 90))
        finally:
            box.sh("systemctl stop edged@bench", timeout=60)
    # The shell run as root, unsandboxed; `systemd-run --scope` only puts it in a cgroup of
    # the container's system.slice like the service, so both get the same CPU share of this
    # shared machine (nsenter alone would leave it in the host's cgroup, one level up).
    box.sh("mkdir -p /tmp/shell-state && STATE_DIRECTORY=/tmp/shell-state nohup "
           "systemd-run --quiet --scope --unit=edged-shell "
           f"/opt/edged/venv/bin/edged run -c {CONFIG} >/tmp/shell.log 2>&1 &")
    try:
        return float(box.sh(rate, timeout=window + 90))
    finally:
        box.sh("systemctl kill -s TERM edged-shell.scope; for i in $(seq 100); do "
               "systemctl is-active -q edged-shell.scope || break; sleep 0.2; done")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0, help="measuring window per round")
    ap.add_argument("--warmup", type=float, default=3.0)
    args = ap.parse_args()
    reason = cannot_boot_reason()
    if reason:
        print(f"cannot boot a container here: {reason}", file=sys.stderr)
        return 1
    binds = {"/src": str(ROOT), "/wheels": str(wheelhouse())}
    models = ["demo"]
    if (SHARED / "imagenet").is_dir():
        binds["/shared"] = str(SHARED)
        models.append("mobilenet_v2")
    with Container(debian_root(), binds=binds, name="edged-bench") as box:
        box.sh("cd /src && PIP_ARGS='--no-index --find-links=/wheels' make install >/dev/null",
               timeout=300)
        box.sh("systemctl start mosquitto")
        print(box.sh("systemd-analyze security edged@bench --no-pager | tail -1").strip())
        for model in models:
            box.sh(f"cat > {CONFIG} <<'EOF'\n{config(model)}EOF")
            rates: dict[str, list[float]] = {"service": [], "shell": []}
            for i in range(args.rounds):
                # Alternate the order so a drift of the shared machine hits both alike.
                order = ("service", "shell") if i % 2 == 0 else ("shell", "service")
                for mode in order:
                    rates[mode].append(measure(box, mode, args.warmup, args.seconds))
            service, shell = (statistics.median(rates[m]) for m in ("service", "shell"))
            paired = statistics.median(a / b for a, b in zip(rates["service"], rates["shell"]))
            print(f"{model}: service {service:.1f} frames/s, shell {shell:.1f} frames/s, "
                  f"ratio of medians {service / shell:.3f}, median of per-round ratios "
                  f"{paired:.3f}")
            print(f"  per round service: {', '.join(f'{r:.1f}' for r in rates['service'])}")
            print(f"  per round shell:   {', '.join(f'{r:.1f}' for r in rates['shell'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
