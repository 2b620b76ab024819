#!/usr/bin/env python3
"""Write rate of the resilient outbox (issue 12: seq ledger, memory fallback, commit-only
counts) against the plain SQLite store underneath it, alternating in one run; plus the rate
while the file is unusable (results into the memory fallback).

    .venv/bin/python benchmarks/outbox_resilience_cost.py [--rounds 5] [--n 5000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edged.mqtt.contract import Message  # noqa: E402
from edged.mqtt.outbox import Outbox  # noqa: E402
from edged.mqtt.outbox_store import Row, SqliteStore  # noqa: E402

PAYLOAD = b"x" * 400  # about the size of a result


def _msg(seq: int) -> Message:
    return Message("edged/n/cam/result", PAYLOAD, 1, False, "result", camera="cam", seq=seq,
                   user_properties=(("model_sha256", "sha"),))


def plain(path: str, n: int) -> float:
    """The SQLite store alone: one transaction per result, as before issue 12."""
    store = SqliteStore(path)
    store.open()
    t0 = time.perf_counter()
    for seq in range(n):
        store.insert([Row(seq + 1, _msg(seq), time.time())], {"cam": seq + 1}, 0, 10**6, 10**9)
    rate = n / (time.perf_counter() - t0)
    store.close()
    return rate


def _put_rate(box: Outbox, n: int) -> float:
    box.open()
    t0 = time.perf_counter()
    for seq in range(n):
        box.put(_msg(seq))
    rate = n / (time.perf_counter() - t0)
    box.close()
    return rate


def resilient(path: str, n: int) -> float:
    return _put_rate(Outbox(path, 10**6, 10**9), n)


def fallback(folder: Path, n: int) -> float:
    blocker = folder / "blocker"
    blocker.write_text("a file where the outbox folder should be")
    return _put_rate(Outbox(str(blocker / "outbox.db"), 10**6, 10**9,
                            fallback_max_messages=n), n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=5000)
    args = ap.parse_args()
    print(f"machine: nproc={os.cpu_count()}, python {platform.python_version()}")
    rates: dict[str, list[float]] = {"plain": [], "resilient": [], "fallback": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        tmp = Path(d)
        for r in range(args.rounds):
            rates["plain"].append(plain(str(tmp / f"plain-{r}.db"), args.n))
            rates["resilient"].append(resilient(str(tmp / f"res-{r}.db"), args.n))
            sub = tmp / f"fb-{r}"
            sub.mkdir()
            rates["fallback"].append(fallback(sub, args.n))
    for name, values in rates.items():
        print(f"{name:10s} median {statistics.median(values):9.0f} results/s   "
              f"rounds: {' '.join(f'{v:.0f}' for v in values)}")
    ratio = statistics.median(rates["resilient"]) / statistics.median(rates["plain"])
    print(f"resilient / plain: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
