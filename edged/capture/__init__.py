"""Capture: cameras, their region of interest, and the frame sources (sources/)."""
