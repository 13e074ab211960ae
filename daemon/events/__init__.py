"""After detection: tracking (ids), zones and lines, events, event sinks and evidence.

tracker.py   one ByteTrack tracker per camera (the ``trackers`` library), fed with timestamps
             so tracks survive frames the latest-frame policy skips
geometry.py  zones (polygons) and lines in pixels; which side of a line, inside a zone
events.py    :class:`Event`, and :class:`CameraEvents`: a camera's tracks -> events + metrics
evidence.py  per-camera ring buffer of recent frames, clip recording, the writer thread
             (snapshots, H.264 clips) and retention by age and size
sinks.py     event sinks with bounded queues and their own sender threads: events_jsonl, mqtt,
             webhook; every dropped event counted
stage.py     :class:`EventStage`: what the pipeline calls after each frame's detection; owned by
             the scheduler thread like the rest of the pipeline
"""
