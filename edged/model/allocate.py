"""A model's tensor shapes as the CPU interpreter allocates them (batch 1), not as stored.

Some published models store an output's shape empty (`[]`), or a placeholder beside a dynamic
signature (`[-1, 1001]`); only the interpreter knows the real shape, once it has resized the
input to a batch of 1 and allocated its tensors. A few models (dynamic tensors) size their
outputs only when they run, so the probe also invokes once on the blank input it allocated.
The file's own view stays in `ModelInfo` for `edged inspect`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edged.errors import ModelError
from edged.inference.backends import get_backend


@dataclass(frozen=True)
class Allocated:
    """Shapes by position, in the model's input and output order."""

    inputs: list[list[int]]
    outputs: list[list[int]]


def allocate(data: bytes, path: str) -> Allocated:
    """Build the model on the CPU once (so what it cannot run fails now, with one clear line)
    and read the shapes the interpreter gave its inputs and outputs."""
    probe = get_backend("cpu")(data, threads=1, name=path)
    try:
        probe.start()
        interp = probe.interpreter  # type: ignore[attr-defined] - the CPU backend's own
        inputs = [[int(d) for d in detail["shape"]] for detail in interp.get_input_details()]
        probe.invoke()  # blank input: only to let dynamic outputs take their size
        outputs = [[int(d) for d in detail["shape"]] for detail in interp.get_output_details()]
    finally:
        probe.close()
    for shape in outputs:
        if not shape or any(d < 1 for d in shape):
            raise ModelError(f"{path}: an output has no shape even after allocation ({shape})")
    return Allocated(inputs, outputs)
