"""Export of the K-step enhancer graph: ONNX parity with PyTorch, sidecar, step checks."""

import json

import numpy as np
import pytest
import torch

from engines.base import open_engine
from export.denoiser import export as dx
from tests.denoiser_fixtures import tiny_checkpoint

# ONNX Runtime vs PyTorch, fp32 on CPU: the graphs are the same convolutions in another order.
PARITY_ATOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("dn")
    ckpt = tiny_checkpoint(d / "tiny_k2.pt", steps=2)
    out = dx.export_denoiser(ckpt, 2, "onnx", d / "tiny.onnx")
    return ckpt, out


def test_onnx_matches_pytorch_dynamic_batch_and_size(exported):
    ckpt, onnx_path = exported
    graph, _ = dx.build_graph(ckpt, 2)
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 64, 64), (3, 3, 36, 100), (2, 3, 4, 8)]:
        x = (rng.random(shape, dtype=np.float32) * 0.4).astype(np.float32)
        err = dx.parity(graph, onnx_path, x)
        assert err < PARITY_ATOL, f"shape {shape}: max |ORT - torch| = {err}"


def test_graph_has_one_dynamic_input_and_output_and_sidecar(exported):
    ckpt, onnx_path = exported
    with open_engine(onnx_path, "cpu") as eng:
        assert [s.name for s in eng.inputs] == ["image"]
        assert [s.name for s in eng.outputs] == ["enhanced"]
        assert eng.inputs[0].shape == (None, 3, None, None)
        meta = eng.metadata
    side = json.loads(onnx_path.with_name(onnx_path.name + ".json").read_text())
    assert side == meta
    assert meta["kind"] == "enhancer" and meta["steps"] == 2 and meta["multiple"] == 4
    assert meta["precision"] == "fp32" and len(meta["checkpoint_sha256"]) == 64
    assert meta["noise"] == "zero"
    assert meta["duskwatch_version"]


def test_output_is_deterministic_and_in_range(exported):
    _, onnx_path = exported
    x = np.random.default_rng(1).random((2, 3, 32, 48), dtype=np.float32)
    with open_engine(onnx_path, "cpu") as eng:
        a = eng.infer({"image": x})["enhanced"]
        b = eng.infer({"image": x})["enhanced"]
    assert np.array_equal(a, b), "a static frame must give the same picture every time"
    assert a.shape == x.shape and a.min() >= 0.0 and a.max() <= 1.0


def test_teacher_checkpoint_exports_at_any_divisor_steps(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "teacher.pt", steps=16, kind="teacher")
    g1, _ = dx.build_graph(ckpt, 1)
    g4, _ = dx.build_graph(ckpt, 4)
    assert len(g1.etas) == 2 and len(g4.etas) == 5


def test_student_step_mismatch_and_missing_weights_are_clear_errors(exported, tmp_path):
    ckpt, _ = exported
    with pytest.raises(ValueError, match="distilled for 2 steps"):
        dx.build_graph(ckpt, 4)
    with pytest.raises(FileNotFoundError, match="no shipped denoiser weights for --steps 3"):
        dx.default_checkpoint(3)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        dx.build_graph(tmp_path / "nope.pt", 2)


def test_engine_format_without_tensorrt_is_a_clear_error(exported, tmp_path):
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed; this test covers machines without it")
    except ImportError:
        pass
    ckpt, _ = exported
    with pytest.raises(RuntimeError, match="TensorRT"):
        dx.export_denoiser(ckpt, 2, "engine", tmp_path / "x.engine")


def test_pt2_export_runs_and_matches(exported, tmp_path):
    ckpt, _ = exported
    graph, _ = dx.build_graph(ckpt, 2)
    out = dx.export_denoiser(ckpt, 2, "pt2", tmp_path / "tiny.pt2")
    prog = torch.export.load(str(out)).module()
    x = torch.rand(3, 3, 12, 20)
    torch.testing.assert_close(prog(x), graph(x), rtol=0, atol=1e-5)


def test_noise_modes_are_deterministic_and_differ(exported):
    from export.denoiser.model import EnhancerGraph

    ckpt, _ = exported
    graph, _ = dx.build_graph(ckpt, 2)
    fixed = EnhancerGraph(graph.net, dx.DiffusionConfig(), 2, noise="fixed").eval()
    x = torch.rand(1, 3, 64, 72)
    with torch.no_grad():
        a, b, c = graph(x), fixed(x), fixed(x.clone())
    assert torch.equal(b, c) and not torch.equal(a, b)
    with pytest.raises(ValueError, match="noise"):
        EnhancerGraph(graph.net, dx.DiffusionConfig(), 2, noise="random")


def test_pt2_engine_through_enhancer_tiny_and_odd_frames(exported, tmp_path):
    from engines.enhancer import Enhancer

    ckpt, onnx_path = exported
    pt2 = dx.export_denoiser(ckpt, 2, "pt2", tmp_path / "tiny.pt2")
    frames = [np.zeros((1, 1, 3), np.uint8), np.full((13, 7, 3), 250, np.uint8),
              np.random.default_rng(0).integers(0, 40, (20, 36, 3)).astype(np.uint8)]
    with Enhancer(pt2, device="cpu") as torch_enh, Enhancer(onnx_path, device="cpu") as onnx_enh:
        assert torch_enh.min_size == 2 * torch_enh.multiple
        outs = torch_enh(frames)
        ref = onnx_enh(frames[2:])[0]
    assert [o.shape for o in outs] == [f.shape for f in frames]
    assert np.abs(outs[2].astype(int) - ref.astype(int)).max() <= 1  # 8-bit rounding of fp32 noise


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("noise", ["zero", "fixed"])
@pytest.mark.parametrize("skip", [(), (0,)])
def test_fast_graph_is_the_reference_function(tmp_path, steps, noise, skip):
    """The export-time rewrite (space-to-depth domain, split 1x1s, folded update) changes no output."""
    from dataclasses import replace

    from export.denoiser.fast import FastEnhancerGraph
    from export.denoiser.model import DiffusionConfig, EnhancerGraph
    from export.denoiser.net import build_net
    from tests.denoiser_fixtures import TINY

    torch.manual_seed(steps)
    net = build_net(replace(TINY, skip_enc=skip, skip_dec=skip))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref = EnhancerGraph(net.eval(), DiffusionConfig(), steps, noise=noise).eval()
    fast = FastEnhancerGraph(ref).eval()
    x = torch.rand(3, 3, 12, 20) * 0.3
    x[1] *= 0.02  # very dark: the pre-gain clamps at its maximum
    with torch.no_grad():
        want, got = ref(x), fast(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < 1e-5


def test_export_if_changed_skips_an_up_to_date_engine_and_redoes_a_stale_one(tmp_path, capsys):
    """The demo's cached enhancer follows the shipped weights across upgrades (--if-changed)."""
    import json

    from daemon.cli.main import main

    out = tmp_path / "denoiser.onnx"
    args = ["export", "denoiser", "--steps", "2", "--format", "onnx", "--out", str(out), "--if-changed"]
    assert main(args) == 0
    first = out.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out and out.stat().st_mtime_ns == first
    sidecar = out.with_name(out.name + ".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps(dict(meta, checkpoint_sha256="0" * 64)))  # older weights
    assert main(args) == 0
    assert "up to date" not in capsys.readouterr().out
    assert json.loads(sidecar.read_text())["checkpoint_sha256"] == meta["checkpoint_sha256"]
