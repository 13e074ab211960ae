"""The detector upgrades itself to int8 on a CPU box whose engine choice is int8
(:mod:`daemon.install.engine_choice`: VNNI, no bf16), calibrated on its own cameras.

- :mod:`daemon.int8.sibling`: where the int8 IR and its frames live beside the f32 IR, and
  whether an int8 IR on disk belongs to the configured f32 one (its sidecar names the f32 IR's
  SHA-256) and passed its check;
- :mod:`daemon.int8.collect`: frames of the running cameras, spread over cameras and time, kept
  as JPEGs (a restart resumes);
- :mod:`daemon.int8.build`: ``duskwatch export openvino-int8`` as a low-priority subprocess that
  a stop ends within a bound;
- :mod:`daemon.int8.check`: the int8 detections scored against the f32 ones on held-out frames
  (box agreement at the operating threshold, no labels);
- :mod:`daemon.int8.upgrader`: the thread that runs these steps and swaps the running detector
  between two batches.
"""
