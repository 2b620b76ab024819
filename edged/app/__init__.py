"""The daemon's wiring: build, lifecycle, the camera set, health, reload."""
