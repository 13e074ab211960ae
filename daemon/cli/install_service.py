"""duskwatch install-service: put the systemd unit, config and engines in place (or remove them).

The work is in :mod:`daemon.install.installer`; this module maps flags to it and prints what to do next.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engines.errors import UserError

HELP = "install (or --uninstall) the systemd service, example config and engines built for this box"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default="/", help="install under this directory instead of / "
                   "(staging, packaging, tests); paths inside the files stay absolute")
    p.add_argument("--user", default="duskwatch", help="service user name (DynamicUser=: "
                   "allocated at start unless a static user of that name exists)")
    p.add_argument("--uninstall", action="store_true",
                   help="remove what an earlier install wrote (recorded in its manifest)")
    p.add_argument("--purge", action="store_true",
                   help="with --uninstall: also remove files edited since install (the config)")
    p.add_argument("--no-build", action="store_true", help="do not build engines now")
    p.add_argument("--format", choices=("auto", "onnx", "openvino", "engine", "torchscript"),
                   default="auto", help="detector engine format (the enhancer's follows it). "
                   "auto = this box's fastest: TensorRT, else ONNX Runtime CUDA, else PyTorch "
                   "CUDA on a GPU box; OpenVINO on a CPU box (docs/BENCHMARKS.md)")
    p.add_argument("--weights", default="yolo11n.pt",
                   help="YOLO weights to export (.pt; ultralytics downloads official ones when online)")
    p.add_argument("--imgsz", type=int, default=640, help="detector input size")
    p.add_argument("--max-batch", type=int, default=8,
                   help="largest batch the engines accept (>= scheduler.max_batch in the config)")
    p.add_argument("--denoiser-checkpoint", default=None,
                   help="distilled denoiser checkpoint (default: the weights shipped with duskwatch)")
    p.add_argument("--steps", type=int, default=2, help="denoiser sampling steps")
    p.add_argument("--no-enhancer", action="store_true", help="build no enhancer (detector only)")
    p.add_argument("--exec", dest="exec_path", default=None,
                   help="duskwatch binary for ExecStart= (default: the one beside this Python)")
    p.add_argument("--source", default=None, help="deploy/ directory with the unit template "
                   "and example config (default: the one in this checkout)")
    p.add_argument("--calib-dir", type=Path, default=None,
                   help="folder of frames (images or clips) of your cameras: build the int8 "
                   "detector now from them (OpenVINO detector only). Without it, on a box whose "
                   "choice is int8, the service builds it from its cameras once they stream")
    p.add_argument("--force", action="store_true",
                   help="replace a unit or engine that install-service did not write")


def run(args: argparse.Namespace) -> int:
    from daemon.install import installer as install

    root = Path(args.root).resolve()
    try:
        if args.uninstall:
            return _uninstall(install, root, args)
        return _install(install, root, args)
    except install.InstallError as exc:
        raise UserError(str(exc)) from None
    except PermissionError as exc:
        raise UserError(f"permission denied: {exc.filename}; run it as root (sudo) or pass "
                           "--root DIR to stage the files somewhere writable") from None
    except OSError as exc:
        raise UserError(f"{exc.filename or 'install'}: {exc.strerror}") from None


def _install(install, root: Path, args: argparse.Namespace) -> int:
    if not root.is_dir():
        raise install.InstallError(f"--root {root} is not a directory")
    deploy = install.find_deploy_dir(args.source)
    exe = install.find_executable(args.exec_path)
    fmt, enhancer_fmt, int8 = _formats(install, args.format)
    if args.calib_dir is not None and fmt != "openvino":
        raise install.InstallError(f"--calib-dir builds an int8 OpenVINO detector; the detector "
                                   f"here is {fmt} (use --format openvino, or drop --calib-dir)")
    specs = install.engine_specs(
        fmt, enhancer_fmt=enhancer_fmt, weights=args.weights, imgsz=args.imgsz, max_batch=args.max_batch,
        denoiser_checkpoint=args.denoiser_checkpoint, steps=args.steps,
        enhancer=not args.no_enhancer, python=sys.executable,
        engines_dir=install.under(root, install.ENGINES_DIR),
    )
    plan = install.InstallPlan(
        root=root,
        unit_text=install.render_unit((deploy / "systemd" / install.UNIT_NAME).read_text(), exe,
                                      args.user, guide=deploy / "README.md"),
        example_config=_example_config(install, deploy),
        specs=specs,
        build=not args.no_build,
        force=args.force,
    )
    print(f"installing duskwatch under {root} (engines: {fmt}, user: {args.user})")
    installer = install.Installer(root)
    warnings = installer.install(plan)
    warnings += install.executable_warnings(exe)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    detector = next(s.path for s in specs if s.role == "detector")
    if plan.build and args.calib_dir is not None:
        _int8_now(install, installer, root, detector, args.calib_dir)
    elif int8:
        print(_int8_later(detector))
    print(f"recorded in {install.MANIFEST_PATH}; `duskwatch install-service --uninstall` removes it")
    print(install.next_steps(root, exe, built=plan.build, fmt=fmt), end="")
    return 0


def _formats(install, asked: str) -> tuple[str, str | None, bool]:
    """The detector and enhancer export formats: this box's fastest for ``auto`` (printed with
    the reason), else what ``--format`` names (the enhancer's follows it); and whether the
    detector is to go int8 (the box's choice)."""
    if asked != "auto":
        print(f"engines: --format {asked} as asked (the box's own choice is skipped)")
        return asked, None, False
    choice = install.choose_engines()
    print(f"engines chosen for this box: {choice.describe()} (--format overrides)")
    return choice.detector, choice.enhancer, choice.int8


def _int8_later(detector) -> str:
    from daemon.int8.upgrader import Settings

    s = Settings()
    return (f"int8: {detector} is an f32 IR; the service makes the int8 detector itself "
            f"once the cameras stream: it collects {s.describe(1)} (divide by the number of "
            "cameras), builds it in the background (a few minutes at low priority), checks it "
            "against f32 and switches to it without a restart (journalctl -u duskwatch | grep "
            "int8). To build it now instead, rerun with --calib-dir DIR (frames of your cameras)")


def _int8_now(install, installer, root: Path, detector, calib_dir: Path) -> None:
    """Build and check the int8 detector from ``calib_dir`` at once (:mod:`daemon.int8.offline`)."""
    from daemon.int8.build import BuildFailed
    from daemon.int8.offline import FolderError, upgrade_from_folder
    from daemon.int8.sibling import Sibling
    from daemon.int8.upgrader import Settings
    from engines.yolo import Detector

    f32 = install.under(root, detector)
    opener = lambda path, conf: Detector(path, conf=0.25 if conf is None else conf)  # noqa: E731
    try:
        result = upgrade_from_folder(f32, calib_dir, Settings(), opener)
    except (BuildFailed, FolderError, OSError) as exc:
        raise install.InstallError(f"building the int8 detector from {calib_dir} failed: {exc}; "
                                   "the f32 one is installed and the service makes the int8 one "
                                   "from its cameras (or rerun with another --calib-dir)") from None
    sib = Sibling(f32)
    for path in (sib.int8, sib.int8.with_suffix(".bin"), sib.int8.with_name(sib.int8.name + ".json")):
        installer.record(install.ENGINES_DIR / path.name)  # uninstall removes them too
    if result.passed:
        print(f"int8: built {sib.int8.name} and checked it: {result.reason}; the service uses it")
    else:
        print(f"warning: int8: {sib.int8.name} refused: {result.reason}; the service runs the f32 "
              "detector and tries again from its cameras' frames later", file=sys.stderr)


def _example_config(install, deploy: Path) -> str:
    path = deploy / "duskwatch.example.yaml"
    if not path.is_file():
        raise install.InstallError(f"{path} is missing; it is the config installed as a start")
    return path.read_text()


def _uninstall(install, root: Path, args: argparse.Namespace) -> int:
    report = install.uninstall(root, purge=args.purge)
    print(f"removed {len(report.removed)} paths, kept {len(report.kept)}")
    if str(root) == "/" and any(p.endswith(install.UNIT_NAME) for p in report.removed):
        print("next: sudo systemctl disable --now duskwatch.service (if still enabled); "
              "sudo systemctl daemon-reload")
    return 0
