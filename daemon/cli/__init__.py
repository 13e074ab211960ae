"""The command line: the entry point (:mod:`daemon.cli.main`) and one module per daemon command."""

from daemon.cli.early import install_if_run as _install_if_run

_install_if_run()  # `duskwatch run`: SIGTERM/SIGHUP handled before the slow imports
