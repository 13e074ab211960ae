"""The duskwatch service: config, camera sources, low-light gate, scheduler, metrics, HTTP, systemd."""

__version__ = "0.1.0"
