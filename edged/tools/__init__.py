"""Command-line tools: the CLI, classify, evaluation, inspect, bench, pull."""
