"""`edged models list|pull`: download a model (and its labels) with resume and sha256 checks.

The download goes to NAME.part next to the destination; an interrupted transfer is resumed
with an HTTP Range request (within the run, and on the next run), and the file is renamed into
place only once its sha256 matches. A mismatch removes the partial file and fails with one line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from edged.errors import EdgedError

_CHUNK = 1 << 16
_ATTEMPTS = 4
_CORAL = "https://raw.githubusercontent.com/google-coral/test_data"


@dataclass(frozen=True)
class Download:
    url: str
    sha256: str | None  # None: no published hash we could check; the pull prints the hash


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    description: str
    model: Download
    labels: Download | None
    notes: str = ""


# Hashes marked verified were computed from copies of these exact files (same repository,
# same commit) in ../shared/models; the others could not be fetched from here and are None:
# the pull then prints the hash it got, for the user to pin with --sha256.
CATALOGUE: dict[str, CatalogueEntry] = {e.name: e for e in [
    CatalogueEntry(
        "mobilenet_v2_quant", "Coral MobileNet v2 (ImageNet, uint8, CPU), metadata + labels",
        Download(f"{_CORAL}/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
                 "mobilenet_v2_1.0_224_quant.tflite",
                 "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"),
        Download(f"{_CORAL}/104342d2d3480b3e66203073dac24f4e2dbb4c41/imagenet_labels.txt",
                 "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1")),
    CatalogueEntry(
        "mobilenet_v2_quant_edgetpu", "Coral MobileNet v2 compiled for the Edge TPU "
        "(CPU twin: mobilenet_v2_quant)",
        Download(f"{_CORAL}/c21de4450f88a20ac5968628d375787745932a5a/"
                 "mobilenet_v2_1.0_224_quant_edgetpu.tflite",
                 "245767c007ee553bb2d3e4f23330dc05d284f0ea4b515caf9e9ba4a326dfb69c"),
        Download(f"{_CORAL}/104342d2d3480b3e66203073dac24f4e2dbb4c41/imagenet_labels.txt",
                 "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1")),
    CatalogueEntry(
        "mobilenet_v1_quant", "Coral MobileNet v1 (ImageNet, uint8, CPU)",
        Download(f"{_CORAL}/master/mobilenet_v1_1.0_224_quant.tflite", None),
        Download(f"{_CORAL}/master/imagenet_labels.txt", None)),
    CatalogueEntry(
        "efficientnet_edgetpu_s_quant", "Coral EfficientNet-EdgeTPU-S (ImageNet, uint8, CPU)",
        Download(f"{_CORAL}/master/efficientnet-edgetpu-S_quant.tflite", None),
        Download(f"{_CORAL}/master/imagenet_labels.txt", None)),
    CatalogueEntry(
        "inat_bird_quant", "Coral MobileNet v2 iNaturalist birds (965 species, uint8, CPU)",
        Download(f"{_CORAL}/master/mobilenet_v2_1.0_224_inat_bird_quant.tflite", None),
        Download(f"{_CORAL}/master/inat_bird_labels.txt", None)),
]}


def run_models(args: argparse.Namespace) -> int:
    if args.models_command == "list":
        for e in CATALOGUE.values():
            verified = "sha256 pinned" if e.model.sha256 else "sha256 not pinned"
            print(f"{e.name:30} {e.description} [{verified}]")
        return 0
    sha = args.sha256.lower() if args.sha256 else None
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise EdgedError("--sha256: expected 64 hex digits")
    os.makedirs(args.output_dir, exist_ok=True)
    if "://" in args.name:
        paths = [pull(Download(args.name, sha), args.output_dir, progress=args.progress)]
    elif args.name in CATALOGUE:
        entry = CATALOGUE[args.name]
        model = Download(entry.model.url, sha or entry.model.sha256)
        paths = [pull(model, args.output_dir, progress=args.progress)]
        if entry.labels is not None:
            paths.append(pull(entry.labels, args.output_dir, progress=args.progress))
    else:
        raise EdgedError(f"models pull: unknown model {args.name!r}; known: "
                         f"{', '.join(CATALOGUE)} (or give a URL)")
    for path in paths:
        print(path)
    return 0


def pull(item: Download, out_dir: str, *, progress: bool | None = None,
         opener: Callable[..., Any] = urllib.request.urlopen, timeout: float = 30.0) -> str:
    """Download `item` into out_dir (resuming NAME.part), verify, return the final path."""
    name = os.path.basename(urllib.request.urlparse(item.url).path) or "model.tflite"
    dest = os.path.join(out_dir, name)
    part = dest + ".part"
    if os.path.exists(dest) and item.sha256 and _sha256(dest) == item.sha256:
        return dest  # already there and verified
    last_error = ""
    for _ in range(_ATTEMPTS):
        try:
            if _fetch(item.url, part, progress, opener, timeout):
                break
        except (urllib.error.URLError, HTTPException, OSError, TimeoutError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code != 416:
                raise EdgedError(f"{item.url}: HTTP {exc.code} {exc.reason}") from None
            last_error = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
    else:
        raise EdgedError(f"{item.url}: download failed after {_ATTEMPTS} attempts: "
                         f"{last_error}; run again to resume")
    got = _sha256(part)
    if item.sha256 and got != item.sha256:
        os.unlink(part)
        raise EdgedError(f"{item.url}: sha256 mismatch: expected {item.sha256}, got {got}; "
                         "the download was removed")
    os.replace(part, dest)
    if not item.sha256:
        print(f"edged: {name}: no sha256 to check against; got {got} (pin it with --sha256)",
              file=sys.stderr)
    return dest


def _fetch(url: str, part: str, progress: bool | None, opener: Callable[..., Any],
           timeout: float) -> bool:
    """Append the rest of `url` to `part`; True once the whole file is there."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "edged"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = opener(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is complete
            return True
        raise
    with response:
        if have and response.status != 206:  # the server ignored Range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        bar = _bar(total, have, os.path.basename(part)[:-5], progress)
        try:
            with open(part, "ab" if have else "wb") as f:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    size = os.path.getsize(part)
    if total is not None and size < total:
        raise OSError(f"connection closed after {size} of {total} bytes")
    return True


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int | None, initial: int, name: str, wanted: bool | None) -> Any:
    if wanted is None:
        wanted = sys.stderr.isatty()
    if not wanted:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name,
                file=sys.stderr)
