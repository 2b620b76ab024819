"""Throughput of edged as the installed systemd service against the same run in a shell.

Boots the test tier's Debian 12 root (tests/helpers/nspawn.py: debootstrap once, cached in
/var/cache/edged-test; `systemd-nspawn -b`), runs `make install` inside, then alternates, in
one run, the same config as `systemctl start edged@bench` (every hardening setting of the
unit) and as `/opt/edged/venv/bin/edged run` from a root shell in the same container, both at
once: on a machine shared with other work, both then see the same load in every window, and
the kernel gives their cgroups equal CPU shares, so the ratio of their rates shows what the
service costs. Each window measures edged_frames_processed_total of both; the video loops and
is read as fast as it decodes (policy every: nothing dropped), so the rate is what the pipeline
can do. Models: the demo, and the shared MobileNet v2 (/work/shared/models) when present.

    python benchmarks/service_vs_shell.py --windows 6 --seconds 8
"""

from __future__ import annotations

import argparse
import json
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
RATES = """python3 - <<'EOF'
import json, os, time, urllib.request
PORTS = (9108, 9118)
PIDS = (SERVICE_PID, SHELL_PID)
TICK = os.sysconf('SC_CLK_TCK')
def count(port):
    url = f'http://127.0.0.1:{port}/metrics'
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(float(l.rsplit(' ', 1)[1]) for l in text.splitlines()
               if l.startswith('edged_frames_processed_total{'))
def cpu(pid):  # utime + stime of every thread, in seconds
    fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK
deadline = time.monotonic() + 90
while True:
    try:
        if all(count(p) > 0 for p in PORTS):
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        raise SystemExit('no frames within 90 s')
    time.sleep(0.2)
time.sleep(WARM)
out = []
for _ in range(WINDOWS):
    c0, u0, t0 = [count(p) for p in PORTS], [cpu(p) for p in PIDS], time.monotonic()
    time.sleep(WINDOW)
    c1, u1, t1 = [count(p) for p in PORTS], [cpu(p) for p in PIDS], time.monotonic()
    out.append([[(c1[i] - c0[i]) / (t1 - t0), u1[i] - u0[i], c1[i] - c0[i]] for i in (0, 1)])
print(json.dumps(out))
EOF"""


def config(model: str, node: str, port: int) -> str:
    if model == "demo":
        spec = f"path: {DEMO}/model.tflite\n    labels: {DEMO}/labels.txt"
    else:
        spec = "path: /shared/imagenet/mobilenet_v2_1.0_224_quant.tflite"
    return (f"node_id: {node}\nmqtt:\n  host: 127.0.0.1\nmodels:\n  default:\n    {spec}\n"
            f"    workers: 2\ncameras:\n  conveyor:\n    source: {DEMO}/conveyor.mp4\n"
            f"    loop: true\nmetrics:\n  listen: 127.0.0.1:{port}\n")


def show_pid(box: Container) -> int:
    return int(box.sh("systemctl show -p MainPID --value edged@bench"))


def measure(box: Container, model: str, windows: int, warm: float, window: float
            ) -> list[list[list[float]]]:
    """Both at once, over the same windows: each sees the same load of the shared machine."""
    box.sh(f"cat > {CONFIG} <<'EOF'\n{config(model, 'bench', 9108)}EOF")
    box.sh(f"cat > /tmp/shell.yaml <<'EOF'\n{config(model, 'shell', 9118)}EOF")
    box.sh("systemctl start edged@bench", timeout=150)
    # The shell run as root, unsandboxed; `systemd-run --scope` only puts it in a cgroup of
    # the container's system.slice beside the service, so the kernel gives both the same CPU
    # share (nsenter alone would leave it in the host's cgroup, one level up).
    # (`systemd-run --scope` runs the command in its own process: the pid stays.)
    box.sh("mkdir -p /tmp/shell-state && STATE_DIRECTORY=/tmp/shell-state nohup sh -c "
           "'echo $$ > /tmp/shell.pid; exec systemd-run --quiet --scope --unit=edged-shell "
           "/opt/edged/venv/bin/edged run -c /tmp/shell.yaml' >/tmp/shell.log 2>&1 &")
    try:
        time.sleep(1.0)
        service_pid = show_pid(box)
        shell_pid = int(box.sh("cat /tmp/shell.pid"))
        script = (RATES.replace("WARM", str(warm)).replace("WINDOWS", str(windows))
                  .replace("WINDOW", str(window)).replace("SERVICE_PID", str(service_pid))
                  .replace("SHELL_PID", str(shell_pid)))
        return json.loads(box.sh(script, timeout=windows * window + 150))
    finally:
        box.run("systemctl kill -s TERM edged-shell.scope; systemctl stop edged@bench",
                timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=6, help="measuring windows per model")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each window")
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
            windows = measure(box, model, args.windows, args.warmup, args.seconds)
            rate = [sum(w[i][0] for w in windows) / len(windows) for i in (0, 1)]
            per_cpu = [sum(w[i][2] for w in windows) / sum(w[i][1] for w in windows)
                       for i in (0, 1)]
            ratios = [w[0][0] / w[1][0] for w in windows]
            print(f"{model}: frames/s service {rate[0]:.1f}, shell {rate[1]:.1f}, ratio "
                  f"{rate[0] / rate[1]:.3f} (median of per-window ratios "
                  f"{statistics.median(ratios):.3f}); frames per CPU-second service "
                  f"{per_cpu[0]:.1f}, shell {per_cpu[1]:.1f}, ratio {per_cpu[0] / per_cpu[1]:.3f}"
                  f"  [{len(windows)} windows of {args.seconds:g} s, both at once]")
            print("  per window frames/s service/shell: " + ", ".join(
                f"{w[0][0]:.1f}/{w[1][0]:.1f}" for w in windows))
            print("  per window CPU s service/shell:    " + ", ".join(
                f"{w[0][1]:.1f}/{w[1][1]:.1f}" for w in windows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
