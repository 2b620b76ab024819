"""Real Prometheus tooling for the tests: Debian's `promtool` (package `prometheus`, installed by
scripts/setup.sh) parses PromQL (`check rules`), evaluates it offline with Prometheus' own query
engine (`test rules`) and lints an exposition (`check metrics`). Plus the Grafana dashboard's
expressions, and a metric-name extractor for them."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

# Grafana's variables, replaced by what Grafana would put there: `instance` is a regex
# (All = `.*`), the interval variables durations.
GRAFANA_VARIABLES = {"instance": ".*", "__rate_interval": "1m", "__interval": "1m",
                     "__range": "1h"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
             "and", "or", "unless", "inf", "nan", "atan2", "start", "end"}


def promtool_or_skip() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/setup.sh "
                    "installs it)")
    return path


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool_or_skip(), *args], input=stdin, capture_output=True,
                          text=True, timeout=60)


def dashboard_queries(path: Path) -> tuple[list[str], list[str]]:
    """(every panel target's `expr`, every templating variable's query) of a dashboard."""
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    exprs.append(value)
                elif key != "templating":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    board = json.loads(path.read_text())
    walk(board.get("panels", []))
    variables = [v["query"] if isinstance(v["query"], str) else v["query"].get("query", "")
                 for v in board.get("templating", {}).get("list", []) if v.get("type") == "query"]
    return exprs, variables


def substitute(expr: str) -> str:
    """The expression as Grafana sends it; KeyError for a variable the dashboard lacks."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: GRAFANA_VARIABLES[m[1] or m[2]], expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers outside strings, label
    matchers, ranges and grouping clauses that are not functions, aggregations or keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        if m[2] or m[1].lower() in _KEYWORDS:
            continue
        names.add(m[1])
    return names


def label_values_metric(query: str) -> str | None:
    """The metric of a Grafana `label_values(metric, label)` query."""
    m = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,\s*\w+\s*\)\s*",
                     query)
    return m[1] if m else None


def exposition_series(text: str) -> list[tuple[str, float]]:
    """Every sample of a /metrics text as (series selector, value)."""
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not math.isfinite(s.value):
                continue
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
            out.append((f"{s.name}{{{labels}}}", float(s.value)))
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def rules_file(path: Path, exprs: list[str], alert_when_empty: bool = False) -> Path:
    """One recording rule per expression (or, with alert_when_empty, one alert `Empty<i>` that
    fires when the expression returns nothing)."""
    rules = [{"alert": f"Empty{i}", "expr": f"absent({e})"} if alert_when_empty
             else {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return path


def rules_test(tmp: Path, rules: Path, series: list[tuple[str, str]], alerts: list[str],
               eval_time: str = "10m") -> subprocess.CompletedProcess:
    """`promtool test rules`: with `series` (selector, values in promtool's notation) as input,
    none of `alerts` may fire at eval_time."""
    test = {"rule_files": [str(rules)], "evaluation_interval": "15s",
            "tests": [{"interval": "15s",
                       "input_series": [{"series": s, "values": v} for s, v in series],
                       "alert_rule_test": [{"eval_time": eval_time, "alertname": a,
                                            "exp_alerts": []} for a in alerts]}]}
    path = tmp / "test.yml"
    path.write_text(yaml.safe_dump(test, width=10_000))
    return run_promtool("test", "rules", str(path))
