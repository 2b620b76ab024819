"""Inference: scheduling, workers, pre- and post-processing, and the backends (backends/)."""
