"""edged: a streaming edge-inference daemon (frames in, classifications out over MQTT)."""

__version__ = "0.1.0"
