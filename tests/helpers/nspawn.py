"""A real systemd to test the installed service under: a minimal Debian root made once by
debootstrap (cached outside the repository), booted with `systemd-nspawn -b` on a throw-away
overlay, entered with nsenter.

    root = debian_root()                 # builds /var/cache/edged-test/debian-root once
    with Container(root, binds={"/src": repo}) as box:
        box.run("make -C /src install")  # a CompletedProcess; box.sh("...") raises on failure

The container has its own network namespace (only loopback): its mosquitto and metrics ports
cannot collide with the host's. Writes go to a tmpfs overlay (`--volatile=overlay`), so every
boot starts from the same cached root.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("EDGED_TEST_CACHE", "/var/cache/edged-test"))
SUITE = "bookworm"
# What the tests need inside besides systemd itself: python3-venv for `make install`,
# mosquitto (broker) and its clients (the test subscribes inside), make, procps (pgrep/kill).
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "mosquitto",
            "mosquitto-clients", "make", "procps", "ca-certificates")
BUILD_TIMEOUT_S = 600.0  # debootstrap took 80 s here; a slow mirror must not hang CI
BOOT_TIMEOUT_S = 60.0


def cannot_boot_reason() -> str | None:
    """Why this machine cannot boot a container for the tests, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (debootstrap and systemd-nspawn)"
    for tool in ("debootstrap", "systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/setup.sh installs debootstrap and " \
                   "systemd-container)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no /sys/fs/cgroup for a nested systemd"
    return None


def mirror(sources: tuple[Path, ...] = (Path("/etc/apt/sources.list"),
                                        Path("/etc/apt/sources.list.d"))) -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line format)."""
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += sorted(src.glob("*.list")) + sorted(src.glob("*.sources"))
        elif src.is_file():
            files.append(src)
    for path in files:
        text = path.read_text(errors="replace")
        for uri in re.findall(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def debian_root(cache: Path = CACHE) -> Path:
    """The cached root, built on first use (under a lock: parallel sessions build it once)."""
    root = cache / "debian-root"
    stamp = root / ".edged-test-packages"
    want = " ".join(PACKAGES)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == want:
            return root
        tmp = cache / "debian-root.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
             str(tmp), mirror()], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise RuntimeError("debootstrap failed: " + " | ".join(tail))
        # The broker the distribution enables at boot is not wanted: each test starts its own.
        for unit in ("mosquitto.service",):
            link = tmp / "etc/systemd/system/multi-user.target.wants" / unit
            link.unlink(missing_ok=True)
        (tmp / "etc/hostname").write_text("edged-test\n")
        (tmp / ".edged-test-build-seconds").write_text(f"{time.monotonic() - started:.0f}\n")
        (tmp / ".edged-test-packages").write_text(want)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
        return root


class Container:
    """One booted systemd-nspawn container; `run()` enters it with nsenter."""

    def __init__(self, root: Path, binds: dict[str, str] | None = None,
                 name: str = "edged-test") -> None:
        self.root, self.binds, self.name = root, binds or {}, name
        self._proc: subprocess.Popen | None = None
        self.leader = 0  # the container's PID 1 (systemd) as the host sees it
        self._log = None

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        args = ["systemd-nspawn", "-b", "-D", str(self.root), "--keep-unit", "--register=no",
                "--console=pipe", "--volatile=overlay", "--private-network",
                f"--machine={self.name}"]
        args += [f"--bind-ro={host}:{inside}" for inside, host in self.binds.items()]
        self._log = open(CACHE / f"{self.name}.console.log", "w")  # noqa: SIM115 - closed in stop
        # Its own session: stop() signals only this nspawn and what it started.
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited with {self._proc.returncode}: "
                                   f"{self.console()[-500:]}")
            children = _children(self._proc.pid)
            if children:
                self.leader = children[0]
                state = self.run("systemctl is-system-running", timeout=10).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the container did not boot within {BOOT_TIMEOUT_S:.0f}s")

    def console(self) -> str:
        try:
            return (CACHE / f"{self.name}.console.log").read_text(errors="replace")
        except OSError:
            return ""

    def run(self, command: str, timeout: float = 60.0, check: bool = False
            ) -> subprocess.CompletedProcess:
        """`command` through /bin/sh inside the container (its PID 1's namespaces)."""
        proc = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-C",
             "/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
             "/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "/bin/sh", "-c", command],
            capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{command!r} exited {proc.returncode}:\n{proc.stdout}"
                                 f"\n{proc.stderr}")
        return proc

    def sh(self, command: str, timeout: float = 60.0) -> str:
        return self.run(command, timeout=timeout, check=True).stdout

    def stop(self, timeout: float = 20.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]
