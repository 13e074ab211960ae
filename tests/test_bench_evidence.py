"""`duskwatch bench evidence` runs end to end on a small tree (the figures themselves are in
docs/BENCHMARKS.md; nothing here is timed)."""

from __future__ import annotations

import json

from daemon.cli.main import main


def test_bench_evidence_prints_its_summary(tmp_path, capsys):
    code = main(["bench", "evidence", "--files", "300", "--clips", "1", "--frames", "2",
                 "--rounds", "1", "--width", "64", "--dir", str(tmp_path)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["files"] == 300 and summary["retention"]["steps"] >= 1
    assert set(summary["clips_per_s_median"]) == {"no_retention", "retention_thread",
                                                  "retention_after_each_clip"}
    assert all(v > 0 for v in summary["clips_per_s_median"].values())
    assert list(tmp_path.iterdir()) == []  # the tree and the clips are gone
