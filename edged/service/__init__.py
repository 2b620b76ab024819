"""Service integration: metrics, sd_notify and the watchdog, logs."""
