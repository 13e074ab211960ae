"""A stand-in for ``duskwatch export openvino-int8`` in the daemon's int8 tests (the build seam,
``daemon.int8.upgrader.Settings.build_argv``): ``python tests/int8_fake_build.py MODE F32 CALIB
OUT``. ``ok`` writes an "int8 IR" (a copy of the f32 files) with the sidecar the real command
writes; ``crash`` exits 3; ``hang`` starts a child and both sleep (their pids go to
``OUT.pids``), for the stop-during-a-build test."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines.ir_files import ir_sha256  # noqa: E402


def main(mode: str, f32: str, calib: str, out: str) -> int:
    f32_p, out_p = Path(f32), Path(out)
    frames = sorted(Path(calib).glob("*.jpg"))
    print(f"fake build: {len(frames)} frames in {calib}", flush=True)
    if mode == "crash":
        print("fake build: boom", flush=True)
        return 3
    if mode == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        out_p.with_suffix(".pids").write_text(f"{os.getpid()} {child.pid}")
        time.sleep(600)
        return 0
    shutil.copy(f32_p, out_p)
    shutil.copy(f32_p.with_suffix(".bin"), out_p.with_suffix(".bin"))
    meta = {"precision": "int8", "format": "openvino", "calibration": {"frames": len(frames)},
            "source_ir": {"file": f32_p.name, "sha256": ir_sha256(f32_p)}}
    out_p.with_name(out_p.name + ".json").write_text(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
