"""Teacher training and distillation run end to end on a tiny net for a few steps."""


import numpy as np
import pytest
import torch

from export.denoiser import data
from export.denoiser.distill import DistillConfig, distill
from export.denoiser.model import load_checkpoint
from export.denoiser.train import TrainConfig, train_teacher
from tests.denoiser_fixtures import TINY, write_photos


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"))


def _cfg(photos, out, steps, **kw):
    return TrainConfig(data=str(photos), out=str(out), steps=steps, batch=2, crop=32, val_every=2,
                       save_every=2, val_size=32, val_fraction=0.5, device="cpu", net=TINY.to_dict(),
                       diffusion={"T": 4, "kappa": 0.25, "eta_1": 1e-3, "eta_T": 0.999, "p": 0.3}, **kw)


def test_split_is_stable_and_disjoint(photos):
    train, val = data.load_split(photos, 0.5)
    names_t, names_v = {p.name for p in train}, {p.name for p in val}
    assert names_t and names_v and not names_t & names_v
    assert {p.name for p in data.load_split(photos, 0.5)[1]} == names_v
    y, x = data.validation_pairs(val, 32)
    y2, _ = data.validation_pairs(val, 32)
    assert y.shape == x.shape == (len(val), 3, 32, 32) and np.array_equal(y, y2)
    assert y.mean() < x.mean()


def test_train_resume_and_distill(photos, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "teacher.pt"
    train_teacher(_cfg(photos, out, steps=2), log=lambda m: None)
    ckpt = torch.load(out, weights_only=False)
    assert ckpt["step"] == 2 and ckpt["kind"] == "teacher"
    assert any("val_psnr" in h for h in ckpt["history"])
    assert out.with_suffix(".png").stat().st_size > 1000
    first_weights = {k: v.clone() for k, v in ckpt["model"].items()}

    train_teacher(_cfg(photos, out, steps=4, resume=str(out)), log=lambda m: None)
    ckpt = torch.load(out, weights_only=False)
    assert ckpt["step"] == 4
    assert [h["step"] for h in ckpt["history"] if "loss" in h] == [1, 2, 3, 4]
    assert any(not torch.equal(first_weights[k], ckpt["model"][k]) for k in first_weights)

    student = tmp_path / "k2.pt"
    weights = tmp_path / "k2_fp16.pt"
    cfg = DistillConfig(teacher=str(out), steps=2, data=str(photos), out=str(student), iters=3, batch=2,
                        crop=32, pool=4, refresh=2, val_every=3, val_size=32, val_fraction=0.5,
                        device="cpu", weights_out=str(weights))
    distill(cfg, log=lambda m: None)
    net, meta = load_checkpoint(weights)
    assert meta["kind"] == "student" and meta["steps"] == 2 and meta["val"]["teacher_psnr"] > 0
    assert net.multiple == TINY.multiple
    with pytest.raises(ValueError, match="must divide"):
        distill(DistillConfig(teacher=str(out), steps=3, data=str(photos), out=str(tmp_path / "k3.pt"),
                              iters=1, device="cpu"), log=lambda m: None)


def test_train_command_errors_are_readable(tmp_path):
    from daemon.cli import main

    rc = main(["train", "denoiser", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "t.pt"),
               "--steps", "1", "--device", "cpu"])
    assert rc == 1


def test_pruned_student_starts_from_the_teacher_minus_blocks():
    from dataclasses import replace

    from export.denoiser.distill import student_from_teacher
    from export.denoiser.net import ResBlock, SkipBlock, build_net

    torch.manual_seed(0)
    teacher = build_net(replace(TINY, widths=(8, 16, 24))).eval()
    student = student_from_teacher(teacher, skip_enc=(0,), skip_dec=(0, 1))
    assert isinstance(student.enc[0], SkipBlock) and isinstance(student.enc[1], ResBlock)
    assert all(isinstance(b, SkipBlock) for b in student.dec)
    assert student.cfg.skip_enc == (0,) and student.cfg.skip_dec == (0, 1)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    t_state = teacher.state_dict()
    for k, v in student.state_dict().items():
        assert torch.equal(v, t_state[k]), k
    assert all(p.requires_grad for p in student.parameters())
    # the configuration round-trips through a checkpoint's dict
    assert build_net(student.cfg.to_dict()).cfg == student.cfg
