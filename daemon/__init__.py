"""The duskwatch service: pipeline (frames -> gate -> engines -> sinks), service (HTTP,
metrics, systemd), the command line, benchmarks and the installer."""
