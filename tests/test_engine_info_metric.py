"""duskwatch_engine_info: one series per engine with the device and provider it really runs on."""

from __future__ import annotations

from daemon.metrics import Metrics


def _series(m: Metrics) -> list[dict]:
    return [s.labels for fam in m.registry.collect() if fam.name == "duskwatch_engine_info"
            for s in fam.samples if s.value == 1]


def test_engine_info_keeps_one_series_per_engine():
    m = Metrics()
    m.set_engine_info("detector", "cpu", "openvino:CPU/bf16")
    m.set_engine_info("enhancer", "cpu", "CPUExecutionProvider")
    m.set_engine_info("detector", "cuda:0", "CUDAExecutionProvider")  # a reload moved it
    assert sorted(_series(m), key=lambda d: d["engine"]) == [
        {"engine": "detector", "device": "cuda:0", "provider": "CUDAExecutionProvider"},
        {"engine": "enhancer", "device": "cpu", "provider": "CPUExecutionProvider"}]
    assert b'duskwatch_engine_info{device="cuda:0",engine="detector"' in m.render()
