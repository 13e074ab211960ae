"""Subcommands contributed by the daemon package: command name -> the module implementing it.

Read by :mod:`daemon.cli.main` through the ``duskwatch.commands`` entry point.
"""

COMMANDS = {
    "check-config": "daemon.cli.check_config",
    "run": "daemon.cli.run",
    "demo": "daemon.cli.demo",
    "detect": "daemon.cli.detect",
    "enhance": "daemon.cli.enhance",
    "bench": "daemon.cli.bench",
    "install-service": "daemon.cli.install_service",
}
