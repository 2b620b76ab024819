#!/usr/bin/env bash
# Install edged as a system service (idempotent), or remove it with --uninstall.
#
#   sudo ./scripts/install.sh              # or: sudo make install
#   sudo ./scripts/install.sh --uninstall  # or: sudo make uninstall
#
# What goes where (all under $DESTDIR, for staging and packaging):
#   /opt/edged/venv                    a virtual environment with edged and its dependencies
#   /opt/edged/share/models/demo       the demo model, labels and video
#   /opt/edged/share/doc               README, example config, Grafana dashboard
#   $UNITDIR/edged.service, edged@.service,       (default /etc/systemd/system)
#           edged-credentials@.service
#   $UDEVDIR/60-edged-coral.rules                 (default /etc/udev/rules.d)
#   /etc/edged/config.yaml             from config.example.yaml, only when none exists; the
#                                      demo camera loops its video at its own frame rate,
#                                      so a fresh install keeps running and publishing
#   /etc/edged/credentials/            files here become credentials mqtt_<file> (mode 0700)
# The config and the state in /var/lib/edged are kept on uninstall.
#
# Environment:
#   DESTDIR            staging root (default: none, i.e. the live system)
#   PYTHON             interpreter for the venv (default python3)
#   EDGED_SKIP_VENV=1  do not create the venv or run pip (used by the tests, which check the
#                      rest of the tree quickly; the venv step is plain `venv` + `pip install`)
#   PIP_ARGS           extra pip install arguments (e.g. --no-index --find-links=wheels/)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
PREFIX=/opt/edged
UNITDIR=${UNITDIR:-/etc/systemd/system}
UDEVDIR=${UDEVDIR:-/etc/udev/rules.d}
CONFDIR=/etc/edged
PYTHON=${PYTHON:-python3}

live_systemd() {
  # Only touch the running system when installing into it and systemd is PID 1.
  [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

uninstall() {
  if live_systemd; then
    systemctl disable --now edged.service 2>/dev/null || true
  fi
  rm -f "$DESTDIR$UNITDIR/edged.service" "$DESTDIR$UNITDIR/edged@.service" \
        "$DESTDIR$UNITDIR/edged-credentials@.service" \
        "$DESTDIR$UDEVDIR/60-edged-coral.rules"
  rm -rf "$DESTDIR$PREFIX"
  if live_systemd; then
    systemctl daemon-reload
    command -v udevadm >/dev/null 2>&1 && udevadm control --reload || true
  fi
  echo "edged uninstalled; kept $CONFDIR (config) and /var/lib/edged (state)"
}

install_venv() {
  local venv="$DESTDIR$PREFIX/venv"
  if [ "${EDGED_SKIP_VENV:-0}" = 1 ]; then
    echo "install: EDGED_SKIP_VENV=1, not creating $venv"
    return
  fi
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  # Build from a copy: pip builds in the source tree (egg-info), which may be read-only (a
  # bind mount) or a user's checkout that root should not leave files in.
  local build
  build=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: $build is local
  trap "rm -rf '$build'" RETURN
  cp -r "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/edged" "$build/"
  find "$build" -name __pycache__ -prune -exec rm -rf {} +
  # shellcheck disable=SC2086 # PIP_ARGS is a list of words on purpose
  "$venv/bin/python" -m pip install -q --upgrade ${PIP_ARGS:-} "$build"
  if [ -n "$DESTDIR" ]; then
    # A venv records its own path; a staged one must name its final place.
    grep -rlF "$venv" "$venv/bin" "$venv/pyvenv.cfg" 2>/dev/null \
      | xargs -r sed -i "s#$DESTDIR$PREFIX/venv#$PREFIX/venv#g"
  fi
}

install_files() {
  install -d -m 0755 "$DESTDIR$PREFIX/share/doc" "$DESTDIR$PREFIX/share/models/demo" \
    "$DESTDIR$UNITDIR" "$DESTDIR$UDEVDIR" "$DESTDIR$CONFDIR"
  install -d -m 0700 "$DESTDIR$CONFDIR/credentials"
  install -m 0644 "$SRC/systemd/edged.service" "$SRC/systemd/edged@.service" \
    "$SRC/systemd/edged-credentials@.service" "$DESTDIR$UNITDIR/"
  install -m 0644 "$SRC/systemd/60-edged-coral.rules" "$DESTDIR$UDEVDIR/"
  install -m 0644 "$SRC/models/demo/model.tflite" "$SRC/models/demo/labels.txt" \
    "$SRC/models/demo/conveyor.mp4" "$DESTDIR$PREFIX/share/models/demo/"
  install -m 0644 "$SRC/README.md" "$SRC/config.example.yaml" "$DESTDIR$PREFIX/share/doc/"
  for doc in "$SRC"/docs/*; do
    [ -f "$doc" ] && install -m 0644 "$doc" "$DESTDIR$PREFIX/share/doc/"
  done
  if [ ! -e "$DESTDIR$CONFDIR/config.yaml" ]; then
    # The example's relative demo paths point at the installed demo files, and its demo
    # camera loops at the video's own rate: a service that plays the file once would exit
    # after a few seconds (the example's defaults stay as documented).
    sed -e "s#models/demo/#$PREFIX/share/models/demo/#g" \
        -e "s#^    loop: false   #    loop: true    #" \
        -e "s#^    realtime: false   #    realtime: true    #" "$SRC/config.example.yaml" \
      > "$DESTDIR$CONFDIR/config.yaml.tmp"
    chmod 0644 "$DESTDIR$CONFDIR/config.yaml.tmp"
    mv "$DESTDIR$CONFDIR/config.yaml.tmp" "$DESTDIR$CONFDIR/config.yaml"
    echo "install: wrote $DESTDIR$CONFDIR/config.yaml (edit it, then: systemctl enable --now edged)"
  else
    echo "install: kept existing $DESTDIR$CONFDIR/config.yaml"
  fi
}

case "${1:-}" in
  --uninstall) uninstall; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--uninstall]" >&2; exit 2 ;;
esac

install_files
install_venv
if live_systemd; then
  systemctl daemon-reload
  command -v udevadm >/dev/null 2>&1 && udevadm control --reload || true
fi
echo "edged installed under $DESTDIR$PREFIX"
