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


def test_the_shots_of_one_scene_stay_on_one_side_of_the_split(tmp_path):
    """LOL shoots most scenes several times: a pair in validation whose scene is in training
    measures memory. Ten scenes, three shots each (other noise, other exposure, a small object
    moved): ten groups, and no scene on both sides."""
    import cv2

    rng = np.random.default_rng(1)
    for d in ("low", "high"):
        (tmp_path / d).mkdir()
    for scene in range(10):
        base = cv2.resize(rng.uniform(0, 255, (6, 8, 3)), (96, 72), interpolation=cv2.INTER_CUBIC)
        for shot in range(3):
            high = base * rng.uniform(0.8, 1.2) + rng.normal(0, 4, base.shape)
            high[30:34, 10 + 20 * shot:16 + 20 * shot] = 220
            name = f"{scene * 7 + shot * 31}.png"  # shots of a scene are not neighbours by name
            cv2.imwrite(str(tmp_path / "high" / name), np.clip(high, 0, 255).astype(np.uint8))
            cv2.imwrite(str(tmp_path / "low" / name), np.clip(high * 0.1, 0, 255).astype(np.uint8))
    photos = data.load_photos(tmp_path, 512)
    assert len(set(data.scene_groups(photos))) == 10
    train, val = data.load_split(tmp_path, 0.3)
    assert train and val and len(train) + len(val) == 30
    scene_of = {f"{s * 7 + k * 31}.png": s for s in range(10) for k in range(3)}
    assert not {scene_of[p.name] for p in train} & {scene_of[p.name] for p in val}


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
    from daemon.cli.main import main

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


def test_a_student_can_change_its_working_scale_and_roll_off_and_keeps_every_weight():
    from dataclasses import replace

    from export.denoiser.distill import student_from_teacher
    from export.denoiser.net import build_net

    torch.manual_seed(0)
    guided = replace(TINY, head="guided", upsample="bilinear", unshuffle=4, work=2)
    teacher = build_net(guided).eval()
    student = student_from_teacher(teacher, headroom=0.3, work=4)
    assert (student.cfg.work, student.cfg.headroom) == (4, 0.3)
    assert student.cfg.frame_multiple == 2 * teacher.cfg.frame_multiple
    t_state = teacher.state_dict()
    assert student.state_dict().keys() == t_state.keys()
    assert all(torch.equal(v, t_state[k]) for k, v in student.state_dict().items())
    assert student_from_teacher(teacher).cfg == teacher.cfg  # nothing asked: the teacher's own
    with pytest.raises(ValueError, match="headroom"):
        student_from_teacher(build_net(TINY), headroom=0.3)  # the residual head has no curve


def _tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _opt_equal(a: dict, b: dict) -> bool:
    return all(_tensors_equal(sa, sb) for sa, sb in zip(a["state"].values(), b["state"].values()))


def test_teacher_resume_is_exact_and_time_budget_stops_and_saves(photos, tmp_path):
    """Three one-step sittings (a zero time budget stops after each step) end exactly where one
    uninterrupted three-step run ends: weights, EMA, optimiser state and losses."""
    torch.set_num_threads(1)
    whole = tmp_path / "whole.pt"
    train_teacher(_cfg(photos, whole, steps=3, progress=False), log=lambda m: None)
    parts, log_file = tmp_path / "parts.pt", tmp_path / "run.log"
    for sitting in range(3):
        train_teacher(_cfg(photos, parts, steps=3, progress=False, time_limit=0.0, log_file=str(log_file),
                           resume=str(parts) if sitting else None), log=lambda m: None)
        assert torch.load(parts, weights_only=False)["step"] == sitting + 1
    a, b = torch.load(whole, weights_only=False), torch.load(parts, weights_only=False)
    assert _tensors_equal(a["model"], b["model"]) and _tensors_equal(a["ema"], b["ema"])
    assert _opt_equal(a["opt"], b["opt"])
    assert [h["loss"] for h in a["history"] if "loss" in h] == [h["loss"] for h in b["history"] if "loss" in h]
    text = log_file.read_text()
    assert "time budget" in text and "resumed from" in text and "val_psnr" in text


def test_student_resume_is_exact_across_a_pool_refresh(photos, tmp_path):
    """Stopping mid-pool (step 1 of a pool refreshed every 2 steps) and resuming rebuilds the same
    pool, so the student ends exactly where the uninterrupted run ends."""
    torch.set_num_threads(1)
    teacher = tmp_path / "teacher.pt"
    train_teacher(_cfg(photos, teacher, steps=1, progress=False), log=lambda m: None)

    def cfg(out, **kw):
        return DistillConfig(teacher=str(teacher), steps=2, data=str(photos), out=str(out), iters=3, batch=2,
                             crop=32, pool=4, refresh=2, val_every=3, val_size=32, val_fraction=0.5,
                             device="cpu", progress=False, **kw)

    distill(cfg(tmp_path / "whole.pt"), log=lambda m: None)
    parts = tmp_path / "parts.pt"
    for sitting in range(3):
        distill(cfg(parts, time_limit=0.0, resume=str(parts) if sitting else None), log=lambda m: None)
    a, b = torch.load(tmp_path / "whole.pt", weights_only=False), torch.load(parts, weights_only=False)
    assert b["step"] == 3 and _tensors_equal(a["model"], b["model"]) and _tensors_equal(a["ema"], b["ema"])


def test_resume_refuses_the_wrong_kind(photos, tmp_path):
    teacher = tmp_path / "teacher.pt"
    train_teacher(_cfg(photos, teacher, steps=1, progress=False), log=lambda m: None)
    with pytest.raises(ValueError, match="K=2 student checkpoint"):
        distill(DistillConfig(teacher=str(teacher), steps=2, data=str(photos), out=str(tmp_path / "s.pt"),
                              iters=2, batch=2, crop=32, pool=2, val_size=32, val_fraction=0.5, device="cpu",
                              progress=False, resume=str(teacher)), log=lambda m: None)
    with pytest.raises(FileNotFoundError, match="drop --resume"):
        train_teacher(_cfg(photos, tmp_path / "t2.pt", steps=1, progress=False, resume=str(tmp_path / "nope.pt")),
                      log=lambda m: None)


@pytest.mark.parametrize("text,seconds", [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("12.5", 12.5)])
def test_time_budget_parses(text, seconds):
    from export.training_cli import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2 days", "h", "1h x", "-5"])
def test_time_budget_rejects_nonsense_with_examples(text):
    from export.training_cli import parse_duration

    with pytest.raises(ValueError, match="expected e.g. 2h"):
        parse_duration(text)


def test_train_command_takes_time_budget_and_log_file(photos, tmp_path):
    from daemon.cli.main import main

    log_file = tmp_path / "cli.log"
    rc = main(["train", "denoiser", "--data", str(photos), "--out", str(tmp_path / "t.pt"), "--steps", "50",
               "--batch", "2", "--crop", "32", "--widths", "8,16", "--device", "cpu", "--time-budget", "0s",
               "--log-file", str(log_file), "--no-progress", "--threads", "1"])
    assert rc == 0
    assert torch.load(tmp_path / "t.pt", weights_only=False)["step"] == 1
    assert "time budget 0 s reached at step 1" in log_file.read_text()
