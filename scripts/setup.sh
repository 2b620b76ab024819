#!/usr/bin/env bash
# One-time set-up on Debian/Ubuntu: system packages, then a virtual environment with edged.
# Idempotent; `make demo` and `make test` call it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test}

# Debian packages: the Python venv module and the mosquitto broker (the demo and tests run one).
need=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # the TLS tests make a test CA
# The rest is for the tests only; `make demo` (EDGED_SETUP=demo) needs just the broker.
if [ "${EDGED_SETUP:-test}" != demo ]; then
# The live-source tests run a real RTSP server (gst-rtsp-server through Debian's system Python,
# which has python3-gi) that encodes JPEG frames to H.264 (x264enc is in plugins-ugly).
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null \
  || need+=(python3-gi gir1.2-gst-rtsp-server-1.0 gir1.2-gstreamer-1.0)
for plugin in base good ugly; do
  dpkg -s "gstreamer1.0-plugins-$plugin" >/dev/null 2>&1 || need+=("gstreamer1.0-plugins-$plugin")
done
# The broker-cluster tests run three nats-server nodes (MQTT + JetStream; Debian's 2.9 has both).
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
# The stream benchmarks (benchmarks/cameras.py) encode their H.264 files with the ffmpeg CLI
# (x264) and run `ffmpeg -f null` as the decode-everything yardstick.
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
# systemd-analyze checks the units (verify, security --offline) in the tests; works without
# systemd running as PID 1.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The metrics tests check the dashboard's PromQL and the /metrics exposition with Prometheus'
# own promtool (offline: no server runs).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# The real-systemd tier (tests/system/test_real_systemd.py) builds a Debian root with
# debootstrap (once, cached in /var/cache/edged-test) and boots it with systemd-nspawn.
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
# The live-view tests open the page in headless Chromium (and need a font to render text).
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
[ -n "$(fc-list 2>/dev/null | head -n 1)" ] || need+=(fonts-dejavu-core)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "setup: please install these Debian packages first: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The system mosquitto service is not needed: the demo and tests start their own broker.

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.edged-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
  touch "$stamp"
fi

# A second venv with tflite-runtime 2.14 (the last release; it needs numpy<2), so the tests can
# check edged under that runtime too. Best effort: the tests that need it skip when it is absent.
TFLITE_VENV=${TFLITE_VENV:-.venv-tflite}
if [ "${EDGED_SKIP_TFLITE_VENV:-0}" != 1 ] && [ "${EDGED_SETUP:-test}" != demo ]; then
  tstamp="$TFLITE_VENV/.edged-installed"
  if [ ! -f "$tstamp" ] || [ pyproject.toml -nt "$tstamp" ]; then
    if { [ -x "$TFLITE_VENV/bin/python" ] || python3 -m venv "$TFLITE_VENV"; } \
      && "$TFLITE_VENV/bin/python" -m pip install -q "tflite-runtime==2.14.0" "numpy<2" \
           "opencv-python-headless>=4.8,<4.11" "paho-mqtt>=2.0,<3" "prometheus-client>=0.17" \
           "pyyaml>=6" "pydantic>=2.5,<3" "tqdm>=4.60" "av>=12" \
      && "$TFLITE_VENV/bin/python" -m pip install -q --no-deps -e .; then
      touch "$tstamp"
    else
      echo "setup: could not build $TFLITE_VENV with tflite-runtime; its tests will be skipped" >&2
    fi
  fi
fi
