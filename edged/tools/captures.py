"""`edged captures`: list, prune and export the evidence captures on this box.

The capture folder comes from `--dir`, else from the config (`capture.dir`, default captures/
under $STATE_DIRECTORY, else /var/lib/edged/captures). Export writes a zip of class folders,
`{label}/{camera}_{time}_{seq}.jpg` with its `.json` sidecar, that training tools read as is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
import zipfile
from collections.abc import Sequence
from datetime import datetime

from edged.config import CaptureConfig, load_config, resolve_config_path
from edged.errors import EdgedError
from edged.mqtt.extensions.captures import (
    Entry,
    capture_root,
    delete_entry,
    retention_plan,
    scan,
)

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `captures` subcommand and its actions (called by the CLI's parser)."""
    cap = sub.add_parser("captures", help="evidence captures: list, prune, export")
    csub = cap.add_subparsers(dest="captures_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", help="config file (default as for run)")
        p.add_argument("--dir", help="the capture folder (default: from the config)")

    ls = csub.add_parser("list", help="captures per camera and label: count, bytes, times")
    common(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object")
    pr = csub.add_parser("prune", help="delete the oldest captures beyond the size and age "
                                       "limits (default: the config's capture settings)")
    common(pr)
    pr.add_argument("--max-bytes", type=int, help="keep at most this many bytes")
    pr.add_argument("--max-age-days", type=float, help="delete captures older than this")
    pr.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    ex = csub.add_parser("export", help="a zip of class folders for review or retraining")
    common(ex)
    ex.add_argument("-o", "--output", required=True, help="the zip file to write")
    ex.add_argument("--since", help="from this time: ISO 8601 (local time unless it has an "
                                    "offset or Z), epoch seconds, or an age like 2h, 7d")
    ex.add_argument("--until", help="up to this time (same forms)")
    ex.add_argument("--labels", help="only these labels, comma separated")
    ex.add_argument("--camera", action="append", help="only this camera (repeatable)")


def parse_time(text: str, now: float) -> float:
    """ISO 8601, epoch seconds, or an age (`90s`, `30m`, `2h`, `7d` ago) -> epoch seconds."""
    text = text.strip()
    m = _AGO.match(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise EdgedError(f"not a time: {text!r} (use ISO 8601, epoch seconds or an age like "
                         "2h)") from None


def select(entries: Sequence[Entry], since: float | None = None, until: float | None = None,
           labels: Sequence[str] | None = None, cameras: Sequence[str] | None = None
           ) -> list[Entry]:
    return [e for e in entries
            if (since is None or e.ts >= since) and (until is None or e.ts <= until)
            and (not labels or e.label in labels) and (not cameras or e.camera in cameras)]


def summary(entries: Sequence[Entry]) -> list[dict]:
    groups: dict[tuple[str, str], dict] = {}
    for e in entries:
        g = groups.setdefault((e.camera, e.label), {"camera": e.camera, "label": e.label,
                                                    "captures": 0, "bytes": 0,
                                                    "oldest": e.ts, "newest": e.ts})
        g["captures"] += 1
        g["bytes"] += e.bytes
        g["oldest"], g["newest"] = min(g["oldest"], e.ts), max(g["newest"], e.ts)
    return [groups[k] for k in sorted(groups)]


def export_zip(entries: Sequence[Entry], output: str) -> int:
    """Class folders `{label}/{camera}_{stem}.jpg` (+ `.json`); returns the captures written.
    Written to a temporary name first, so a failed export leaves no partial zip behind."""
    tmp = output + ".part"
    n = 0
    try:
        with zipfile.ZipFile(tmp, "w") as z:
            for e in entries:
                image, side = e.image, os.path.splitext(e.image)[0] + ".json"
                if not os.path.isfile(image):
                    continue  # deleted meanwhile (retention by the running daemon)
                name = f"{e.label}/{e.camera}_{e.stem}"
                z.write(image, name + ".jpg", compress_type=zipfile.ZIP_STORED)
                if os.path.isfile(side):
                    z.write(side, name + ".json", compress_type=zipfile.ZIP_DEFLATED)
                n += 1
        os.replace(tmp, output)
    except OSError as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise EdgedError(f"captures export: cannot write {output}: {exc.strerror or exc}"
                         ) from None
    return n


def _settings(args: argparse.Namespace) -> tuple[str, CaptureConfig]:
    if args.dir is not None and args.config is None:
        return args.dir, CaptureConfig()
    cfg = load_config(resolve_config_path(args.config)).capture
    return (args.dir or capture_root(cfg)), cfg


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def run_captures(args: argparse.Namespace, now: float | None = None) -> int:
    now = time.time() if now is None else now
    root, cfg = _settings(args)
    if not os.path.isdir(root):
        raise EdgedError(f"captures: no capture folder at {root}")
    entries, _temps = scan(root)
    action = args.captures_command
    if action == "list":
        groups = summary(entries)
        total = {"captures": len(entries), "bytes": sum(e.bytes for e in entries)}
        if args.json:
            print(json.dumps({"root": root, "total": total, "groups": groups}))
            return 0
        print(f"{root}: {total['captures']} captures, {total['bytes']} bytes")
        for g in groups:
            print(f"  {g['camera']}/{g['label']}: {g['captures']} captures, {g['bytes']} "
                  f"bytes, {_iso(g['oldest'])} .. {_iso(g['newest'])}")
        return 0
    if action == "prune":
        max_bytes = args.max_bytes if args.max_bytes is not None else cfg.max_bytes
        max_age = args.max_age_days if args.max_age_days is not None else cfg.max_age_days
        if max_bytes < 0 or max_age <= 0:
            raise EdgedError("captures prune: --max-bytes must be >= 0 and --max-age-days > 0")
        plan = retention_plan(entries, max_bytes, max_age * 86400.0, now)
        freed = sum(e.bytes for e, _ in plan) if args.dry_run else sum(
            delete_entry(e) for e, _ in plan)
        by = {r: sum(1 for _, why in plan if why == r) for r in ("age", "size")}
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{root}: {verb} {len(plan)} captures ({freed} bytes): {by['age']} by age, "
              f"{by['size']} by size; {len(entries) - len(plan)} kept")
        return 0
    since = parse_time(args.since, now) if args.since else None
    until = parse_time(args.until, now) if args.until else None
    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
    chosen = select(entries, since, until, labels, args.camera)
    n = export_zip(chosen, args.output)
    print(f"{args.output}: {n} captures in {len({e.label for e in chosen})} class folders")
    return 0
