"""A full disk never leaves a truncated last line in the JSONL file (issue 12, item 6).

The "full disk" is real: a child process with RLIMIT_FSIZE, where the kernel accepts a write
only up to the limit (a short write), then refuses with EFBIG, as a filling disk does."""

import json
import subprocess
import sys

CHILD = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
from daemon.pipeline.frames import Result
from daemon.pipeline.sinks import JsonlSink, SinkSet
from engines.detections import Detections
names = {0: "person"}
failures = []
sinks = SinkSet([JsonlSink(sys.argv[1])], on_failure=failures.append)
for seq in range(200):
    det = Detections.from_arrays([[1.0, 2.0, 30.0, 40.0]] * 3, [0.9] * 3, [0] * 3, names)
    sinks.write(Result(camera="gate", seq=seq, captured_wall=0.0, enhanced=False,
                       detections=det))
sinks.close()
print(len(failures))
"""


def test_full_disk_leaves_only_whole_lines(tmp_path):
    path = tmp_path / "det.jsonl"
    res = subprocess.run([sys.executable, "-c", CHILD, str(path), "4000"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) > 0  # the limit was hit: writes failed
    data = path.read_bytes()
    assert 0 < len(data) <= 4000 and data.endswith(b"\n")
    for line in data.decode().splitlines():
        json.loads(line)
