"""Where a frame goes: source (frames, sources, synthetic) -> gate -> engines (process) -> scheduler -> sinks and snapshots."""
