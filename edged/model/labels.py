"""Label files: parsing the common formats and fitting them to a model's output size."""

from __future__ import annotations

import logging
import re

from edged.errors import ModelError

log = logging.getLogger(__name__)

# "0 cat", "0: cat", "0,cat": an index, a separator, the label.
_PREFIXED = re.compile(r"^\s*(\d+)\s*(?:[:,]\s*|\s+)(\S.*?)\s*$")
BACKGROUND = "background"


def parse_labels(lines: list[str]) -> list[str]:
    """Labels in index order. Prefixed forms are used only when every line has an index."""
    lines = [line.rstrip("\r\n") for line in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    matches = [_PREFIXED.match(line) for line in lines]
    if lines and all(matches):
        by_index = {int(m.group(1)): m.group(2) for m in matches if m}
        if len(by_index) != len(lines):
            raise ValueError("an index is given twice")
        size = max(by_index) + 1
        return [by_index.get(i, str(i)) for i in range(size)]
    return [line.strip() for line in lines]


def read_labels(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: files saved with a BOM
            return parse_labels(f.readlines())
    except OSError as exc:
        raise ModelError(f"{path}: cannot read labels: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: labels file is not UTF-8 text") from None
    except ValueError as exc:
        raise ModelError(f"{path}: bad labels file: {exc}") from None


def fit_labels(labels: list[str], classes: int, where: str) -> list[str]:
    """Match labels to the model's class count, by one documented rule.

    - same count: used as is;
    - one fewer label: the model has a background class at index 0 that the file omits
      (1001-class ImageNet models with a 1000-line file): index 0 becomes `background`;
    - one more label, the first being `background`: the file has a background entry the
      model lacks: it is dropped;
    - anything else is an error.
    """
    if len(labels) == classes:
        return labels
    if len(labels) == classes - 1:
        log.info("%s: %d labels for %d classes: index 0 is taken as %r",
                 where, len(labels), classes, BACKGROUND)
        return [BACKGROUND, *labels]
    if len(labels) == classes + 1 and labels[0].strip().lower() == BACKGROUND:
        log.info("%s: %d labels for %d classes: dropping the leading %r",
                 where, len(labels), classes, BACKGROUND)
        return labels[1:]
    raise ModelError(
        f"{where}: {len(labels)} labels but the model has {classes} output classes"
    )
