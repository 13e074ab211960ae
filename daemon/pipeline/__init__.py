"""Where a frame goes: a source (sources.py, synthetic.py) fills its latest-frame slot
(latest.py) -> the scheduler (scheduler.py) forms batches -> process.py runs each batch (gate.py ->
enhancer -> detector) -> metrics, sinks (sinks.py) and snapshots (snapshots.py)."""
