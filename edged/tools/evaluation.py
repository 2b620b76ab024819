"""Evaluation of a classifier on a labelled folder: pure bookkeeping, no model code."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from edged.errors import EdgedError
from edged.capture.sources.images import list_images


def labelled_images(root: str, labels: list[str]) -> list[tuple[str, int]]:
    """(image path, true class index) for every image in ROOT/<class name>/.

    A class folder is matched to a label exactly, else ignoring case and '_'/' '; a folder
    that matches no label is an error (it would silently count as wrong otherwise)."""
    if not os.path.isdir(root):
        raise EdgedError(f"--eval: not a folder: {root}")
    norm = {_norm(label): i for i, label in enumerate(labels)}
    exact = {label: i for i, label in enumerate(labels)}
    found: list[tuple[str, int]] = []
    folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not folders:
        raise EdgedError(f"--eval: {root} has no class folders (expected CLASS_NAME/*.jpg)")
    for folder in folders:
        index = exact.get(folder, norm.get(_norm(folder)))
        if index is None:
            raise EdgedError(f"--eval: folder {folder!r} in {root} is not one of the model's "
                             "labels")
        found += [(path, index) for path in list_images(os.path.join(root, folder))]
    if not found:
        raise EdgedError(f"--eval: no images in the class folders of {root}")
    return found


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", " ")


@dataclass
class Evaluation:
    """A confusion matrix over the model's classes, filled one prediction at a time."""

    labels: list[str]
    matrix: dict[tuple[int, int], int] = field(default_factory=dict)  # (true, predicted)
    unreadable: int = 0

    def add(self, true: int, predicted: int) -> None:
        self.matrix[(true, predicted)] = self.matrix.get((true, predicted), 0) + 1

    @property
    def total(self) -> int:
        return sum(self.matrix.values())

    @property
    def accuracy(self) -> float:
        correct = sum(n for (t, p), n in self.matrix.items() if t == p)
        return correct / self.total if self.total else 0.0

    def classes(self) -> list[int]:
        """The classes that occur as truth or prediction, in index order."""
        return sorted({c for pair in self.matrix for c in pair})

    def per_class(self) -> dict[int, dict[str, float | int | None]]:
        out = {}
        for c in self.classes():
            tp = self.matrix.get((c, c), 0)
            support = sum(n for (t, _), n in self.matrix.items() if t == c)
            predicted = sum(n for (_, p), n in self.matrix.items() if p == c)
            out[c] = {"support": support, "predicted": predicted,
                      "precision": tp / predicted if predicted else None,
                      "recall": tp / support if support else None}
        return out

    def as_dict(self) -> dict:
        classes = self.classes()
        return {
            "images": self.total, "unreadable": self.unreadable,
            "accuracy": round(self.accuracy, 6),
            "per_class": {self.labels[c]: {k: (round(v, 6) if isinstance(v, float) else v)
                                           for k, v in stats.items()}
                          for c, stats in self.per_class().items()},
            "confusion": {"labels": [self.labels[c] for c in classes],
                          "rows_true_cols_predicted": [[self.matrix.get((t, p), 0)
                                                        for p in classes] for t in classes]},
        }

    def report(self) -> str:
        """Accuracy, per-class precision/recall and a confusion table, as text."""
        classes = self.classes()
        names = [self.labels[c] for c in classes]
        width = max([len(n) for n in names] + [9])
        lines = [f"accuracy: {self.accuracy:.4f} ({sum(self.matrix.get((c, c), 0) for c in classes)}"
                 f"/{self.total} images{f', {self.unreadable} unreadable' if self.unreadable else ''})",
                 "", f"{'class':<{width}}  precision  recall  support"]
        for c, stats in self.per_class().items():
            p, r = stats["precision"], stats["recall"]
            lines.append(f"{self.labels[c]:<{width}}  {_pct(p):>9}  {_pct(r):>6}  "
                         f"{stats['support']:>7}")
        cell = max([len(str(n)) for n in self.matrix.values()] + [max(len(n) for n in names)])
        lines += ["", "confusion (rows: true class, columns: predicted)",
                  f"{'':<{width}}  " + " ".join(f"{n:>{cell}}" for n in names)]
        for t in classes:
            lines.append(f"{self.labels[t]:<{width}}  " + " ".join(
                f"{self.matrix.get((t, p), 0):>{cell}}" for p in classes))
        return "\n".join(lines)


def _pct(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.4f}"
