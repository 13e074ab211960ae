"""Benchmarks (``duskwatch bench ...``): not part of the running service; each prints a JSON summary as its last stdout line."""
