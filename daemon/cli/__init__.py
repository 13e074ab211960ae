"""The command line: the entry point (:mod:`daemon.cli.main`) and one module per daemon command."""
