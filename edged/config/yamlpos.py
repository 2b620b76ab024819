"""YAML loading that remembers where each key stands, so config errors can name a line.

A config may have any shape (it can come from anywhere, and SIGHUP re-reads it in the running
daemon), so loading is bounded: nesting depth, the number of values aliases expand to, and
every failure of the YAML library or of constructing a value ends in a YamlError with a line,
never in a RecursionError or another traceback.
"""

from __future__ import annotations

from typing import Any

import yaml

Path = tuple[str | int, ...]

# Far deeper than any edged config (about 6 levels), far below Python's recursion limit.
MAX_DEPTH = 64
# Values after alias expansion ("billion laughs"): validation walks every one of them.
MAX_VALUES = 100_000


_TOO_MANY = (f"more than {MAX_VALUES} values (each use of an alias counts); a config has a "
             "few hundred")


class YamlError(ValueError):
    """Unparseable YAML; `line` is 1-based."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


# libyaml (C) parses a MiB in a fraction of a second, the pure-Python parser takes ~20 s.
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader whose constructor reports a value it cannot build (e.g. an int of 5000
    digits) with its line instead of raising a bare ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (YamlError, yaml.YAMLError):
            raise
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            why = str(exc).split(";")[0][:200]  # not Python's advice on its own limits
            raise YamlError(node.start_mark.line + 1, f"cannot read this value: {why}") from None


def load_with_lines(text: str) -> tuple[Any, dict[Path, int]]:
    """Parse YAML text; return the data and a map from key path to 1-based line."""
    try:
        _check_depth(text)  # before composing: the composer recurses once per level
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            lines: dict[Path, int] = {}
            data = None
            if node is not None:
                _check_size(node)
                _walk(node, (), lines, set())
                data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlError(line, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:
        # e.g. a NUL or another control character: position is an index into `text`.
        line = text.count("\n", 0, max(0, exc.position)) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or " ")
        raise YamlError(line, f"invalid YAML: character U+{char:04X} is not allowed in YAML "
                        "text") from None
    except yaml.YAMLError as exc:
        raise YamlError(1, f"invalid YAML: {str(exc)[:200]}") from None
    except RecursionError:  # a last resort: the depth bound above should prevent this
        raise YamlError(1, f"nested deeper than {MAX_DEPTH} levels") from None
    return data, lines


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH from the event stream (the parser keeps its own
    stack, so this does not recurse however deep the text is)."""
    parser = _Base(text)
    depth = events = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            events += 1
            if events > 2 * MAX_VALUES:  # before building the nodes, not only after
                raise YamlError(event.start_mark.line + 1, _TOO_MANY)
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlError(event.start_mark.line + 1,
                                    f"nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    finally:
        parser.dispose()


def _check_size(root: yaml.Node) -> None:
    """Count the values the document expands to (aliases count each time they are used),
    without expanding it; refuse recursive aliases. Iterative: no recursion on any shape."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            active.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_VALUES:
                raise YamlError(node.start_mark.line + 1, _TOO_MANY)
            continue
        if key in sizes:
            continue
        if key in active:
            raise YamlError(node.start_mark.line + 1, "an alias refers to the node it is in "
                            "(a recursive alias)")
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int], seen: set[int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    # An alias is the same node object again: walk it once. Depth is bounded by the composer.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in keys:
                raise YamlError(key_node.start_mark.line + 1, f"duplicate key {_short(key)}")
            keys.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, seen)


def _short(text: str, limit: int = 60) -> str:
    """repr() of a key, shortened: an error line stays one readable line."""
    r = repr(text)
    return r if len(r) <= limit else r[:limit - 4] + "...'"


def line_for(lines: dict[Path, int], path: Path) -> int:
    """The line of the deepest existing prefix of `path` (a missing key points at its parent)."""
    for end in range(len(path), -1, -1):
        for candidate in (path[:end], tuple(str(p) for p in path[:end])):
            if candidate in lines:
                return lines[candidate]
    return 1
