"""``duskwatch install-service``: writes the systemd unit, config and engines for this box (not part of the running service)."""
