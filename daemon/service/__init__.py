"""The running service around the pipeline: lifecycle and reloads, HTTP, metrics, systemd notify."""
