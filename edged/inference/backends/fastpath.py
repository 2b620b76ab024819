"""Does the CPU backend have its fast path? Checked once per model at start.

LiteRT runs quantized and float models fast on x86 and ARM through its default XNNPACK
delegate. When the delegate is missing, every invoke runs the reference kernels, 6-200x slower
(the demo model: 0.3 ms -> 54-78 ms), and nothing else says so: the runtime prints only
"Error in cpuinfo: failed to parse processor information" once. Seen causes:
- /proc/cpuinfo hidden (systemd `ProcSubset=pid`, some container runtimes): XNNPACK's cpuinfo
  library cannot tell the CPU's features, and LiteRT then creates no delegate;
- tflite-runtime 2.14 (the last release) applies XNNPACK to float models only.

The check builds one extra interpreter, looks for the delegate in its execution plan (a node
named DELEGATE) and times a few invokes; where the runtime cannot show its plan, an invoke time
far above what the model's size suggests decides. One warning names the likely cause, and
`edged_backend_fast_path{model}` is 1 or 0.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
INVOKES = 5
DEADLINE_S = 3.0  # the whole timing run, even for a slow model on the slow path
# Without the delegate the invokes here took 6x (MobileNet v2, 3.4 MB: 12 -> 70 ms) to 200x
# (the 69 kB demo model) longer. Only used when the runtime cannot show its execution plan.
SLOW_BASE_MS = 5.0
SLOW_MS_PER_MB = 30.0


@dataclass(frozen=True)
class FastPath:
    model: str
    ok: bool
    delegate: bool | None  # XNNPACK in the execution plan; None: the runtime cannot tell
    cpuinfo: bool  # /proc/cpuinfo readable and naming processors
    invoke_ms: float | None  # median of the timed invokes
    cause: str | None  # the likely cause when not ok


def cpuinfo_readable(path: Path = CPUINFO) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    return b"processor" in head or b"Processor" in head


def has_delegate(interpreter) -> bool | None:  # noqa: ANN001 - the runtime's own type
    """Whether a delegate took over nodes of the plan; None when the runtime cannot say."""
    details = getattr(interpreter, "_get_ops_details", None)
    if details is None:
        return None
    try:
        return any(op.get("op_name") == "DELEGATE" for op in details())
    except Exception:  # noqa: BLE001 - a private API: any failure means "cannot tell"
        return None


def time_invokes(invoke: Callable[[], None], count: int = INVOKES,
                 deadline_s: float = DEADLINE_S,
                 clock: Callable[[], float] = time.perf_counter) -> float | None:
    """Median milliseconds of up to `count` invokes after one warm-up, within `deadline_s`."""
    start = clock()
    invoke()  # the first invoke allocates and packs weights
    times = []
    while len(times) < count and clock() - start < deadline_s:
        t0 = clock()
        invoke()
        times.append((clock() - t0) * 1000)
    return statistics.median(times) if times else None


def slow_limit_ms(model_bytes: int) -> float:
    return SLOW_BASE_MS + SLOW_MS_PER_MB * model_bytes / 1e6


def judge(model: str, runtime: str, delegate: bool | None, cpuinfo: bool,
          invoke_ms: float | None, model_bytes: int) -> FastPath:
    """The verdict and its likely cause, from what was seen."""
    slow = invoke_ms is not None and invoke_ms > slow_limit_ms(model_bytes)
    ok = delegate if delegate is not None else not slow
    cause = None
    if not ok:
        timing = (f"invokes take {invoke_ms:.1f} ms" if invoke_ms is not None
                  else "invokes not timed")
        if not cpuinfo:
            cause = (f"{CPUINFO} is not readable (systemd ProcSubset=pid or a container "
                     "hides it), so LiteRT created no XNNPACK delegate; " + timing)
        elif runtime.startswith("tflite-runtime"):
            cause = (f"{runtime} applies XNNPACK to float models only; " + timing +
                     " (pip install ai-edge-litert)")
        elif delegate is False:
            cause = f"{runtime} created no XNNPACK delegate for this model; " + timing
        else:
            cause = (f"{timing}, more than {slow_limit_ms(model_bytes):.0f} ms expected for a "
                     f"{model_bytes / 1e6:.1f} MB model (is XNNPACK disabled?)")
    return FastPath(model, ok, delegate, cpuinfo, invoke_ms, cause)


def check_fast_path(loaded, gauge=None, cpuinfo_path: Path = CPUINFO) -> FastPath | None:  # noqa: ANN001
    """Check `loaded` (a LoadedModel) on the CPU; log one warning when the fast path is
    missing and set `gauge` (edged_backend_fast_path, labelled by model). None when the model
    runs on an accelerator (its own checks apply) or the check itself cannot run."""
    from edged.errors import ModelError
    from edged.inference.backends.cpu import CpuBackend
    from edged.model.runtime import find_runtime

    if loaded.accelerator is not None:
        return None
    backend = CpuBackend(loaded.model_bytes, threads=loaded.threads,
                         output_index=loaded.output_index, name=loaded.path)
    try:
        backend.start()
        delegate = has_delegate(backend.interpreter)
        invoke_ms = time_invokes(backend.invoke)
    except ModelError as exc:  # the workers will report it themselves
        log.debug("model %s: fast-path check skipped: %s", loaded.name, exc)
        return None
    finally:
        backend.close()
    result = judge(loaded.name, str(find_runtime()), delegate, cpuinfo_readable(cpuinfo_path),
                   invoke_ms, len(loaded.model_bytes))
    if gauge is not None:
        gauge.labels(loaded.name).set(1 if result.ok else 0)
    if result.ok:
        log.info("model %s: CPU fast path %s (invoke %.2f ms)", loaded.name,
                 "XNNPACK" if result.delegate else "by timing", result.invoke_ms or 0.0)
    else:
        log.warning("model %s: the CPU backend runs without its fast path: %s", loaded.name,
                    result.cause)
    return result
