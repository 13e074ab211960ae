"""duskwatch bench engine|pipeline|night|http|evidence|int8-check ...: benchmarks that print a JSON summary as their last line.

Each benchmark is its own module exposing ``HELP``, ``configure(parser)`` and ``run(args)``
(the same contract as the top-level commands); a module this checkout lacks is skipped.
"""

from __future__ import annotations

import argparse
import importlib

from engines.errors import UserError

HELP = "benchmarks (engine, pipeline, night, http, evidence, int8-check); the last stdout line is a JSON summary"

# bench name -> module implementing it
BENCHES = {
    "engine": "daemon.bench.engine",
    "pipeline": "daemon.bench.pipeline",
    "night": "daemon.bench.night",
    "http": "daemon.bench.http",
    "evidence": "daemon.bench.evidence",
    "int8-check": "daemon.bench.int8_check",
}


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench_what", metavar="WHAT")
    sub.required = True
    for name, module_name in BENCHES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not in this checkout
            raise
        sp = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sp)
        sp.set_defaults(bench_run=module.run)


def run(args: argparse.Namespace) -> int:
    bench_run = getattr(args, "bench_run", None)
    if bench_run is None:
        raise UserError("choose a benchmark: " + ", ".join(BENCHES), exit_code=2)
    return int(bench_run(args) or 0)
