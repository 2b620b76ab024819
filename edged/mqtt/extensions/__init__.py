"""Features that join the MQTT pipeline: state, commands, Home Assistant, snapshots."""
