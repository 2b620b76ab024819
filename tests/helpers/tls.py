"""Test PKI made with the openssl CLI at test time, and a mosquitto with a TLS listener."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.broker import Mosquitto, free_port

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _run(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    crt, key = folder / f"{name}.crt", folder / f"{name}.key"
    _run("req", "-x509", *_EC, "-keyout", str(key), "-out", str(crt), "-days", "2",
         "-subj", f"/CN={name}")
    return crt, key


def make_cert(folder: Path, name: str, ca: tuple[Path, Path], san: str | None = None
              ) -> tuple[Path, Path]:
    crt, key, csr = folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}.csr"
    _run("req", *_EC, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    ext = folder / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
         "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return crt, key


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(folder, "test-ca")
    other = make_ca(folder, "other-ca")
    return Pki(ca=ca[0], other_ca=other[0],
               server=make_cert(folder, "server", ca, "IP:127.0.0.1"),
               client=make_cert(folder, "edged-client", ca))


def tls_broker(workdir: Path, pki: Pki) -> tuple[Mosquitto, int]:
    """A plain listener (for the test's own subscriber) and an mTLS listener for edged."""
    tls_port = free_port()
    # `user root`: a broker started as root keeps its user, so it can read the test's files
    # in the test's private temp folder (it is ignored when not started as root).
    conf = (f"user root\nlistener {tls_port} 127.0.0.1\ncafile {pki.ca}\ncertfile {pki.server[0]}\n"
            f"keyfile {pki.server[1]}\nrequire_certificate true\ntls_version tlsv1.2\n")
    return Mosquitto(workdir, extra_conf=conf), tls_port
