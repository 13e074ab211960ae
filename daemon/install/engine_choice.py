"""Which engine kind is fastest on this box, and why: the one rule behind ``install-service``,
``demo`` and ``check-config``'s warning.

The rule follows the measurements in docs/BENCHMARKS.md (same accuracy is the condition):

- a GPU box: TensorRT when ``import tensorrt`` works (a plan built for this GPU, fp16); else
  ONNX Runtime's CUDA provider when ONNX Runtime has it; else PyTorch on CUDA (TorchScript
  detector, ``.pt2`` enhancer: the reference H200 box, which has neither);
- a CPU box: the detector on OpenVINO (``.xml``), which runs bf16 where the CPU has AVX-512 BF16
  or AMX (1.7-1.9x ONNX Runtime) and, in f32 elsewhere, is on par with ONNX Runtime alone and
  costs 1.2-1.3x less CPU per frame in the pipeline; the enhancer stays on ONNX Runtime, which
  ran it 2.3-2.6x faster than OpenVINO (docs/BENCHMARKS.md, "Engine choice"); ONNX Runtime for
  both when OpenVINO is not installed;
- a CPU box without bf16 but with VNNI (AVX-512 VNNI or AVX-VNNI: int8 dot products) and NNCF: the
  detector in OpenVINO int8 (NNCF, the stem convolution and the head's decoding float), 1.5-1.8x
  f32 per CPU second and within 0.005 AP50 of it (docs/BENCHMARKS.md, "int8 on a CPU without
  bf16"). It needs frames of the box's own cameras: the installer builds the f32 IR, and the
  daemon calibrates, checks and switches to the int8 one once its cameras stream
  (:mod:`daemon.int8`; ``engines.int8: auto``). ``EngineChoice.int8`` says so.

:func:`probe_box` gathers the facts (cheaply: nothing is imported that the answer does not
need); :func:`choose_engines` is a pure function of them, so tests feed it any box. Run as
``python -m daemon.install.engine_choice`` it prints the facts as JSON (the installer asks the
Python that will run the service).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

#: ``duskwatch export yolo --format`` -> engine suffix (export/yolo.py's SUFFIX).
DETECTOR_SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "engine": ".engine",
                   "torchscript": ".torchscript"}
#: ``duskwatch export denoiser --format`` -> engine suffix.
ENHANCER_SUFFIX = {"onnx": ".onnx", "engine": ".engine", "pt2": ".pt2"}
#: The enhancer format that goes with an explicitly asked detector format (``--format X``).
ENHANCER_FOR = {"onnx": "onnx", "openvino": "onnx", "engine": "engine", "torchscript": "pt2"}
#: What a configured engine file runs on, by suffix (for check-config's comparison).
KIND_OF_SUFFIX = {".onnx": "onnx", ".xml": "openvino", ".engine": "engine", ".plan": "engine",
                  ".torchscript": "torchscript", ".pt2": "pt2"}
RUNTIME_NAME = {"onnx": "ONNX Runtime", "openvino": "OpenVINO", "engine": "TensorRT",
                "torchscript": "PyTorch", "pt2": "PyTorch"}

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


@dataclass(frozen=True)
class BoxFacts:
    """What decides the engine kind: the runtimes importable and what the hardware offers."""

    tensorrt: bool = False
    ort_cuda: bool = False  # ONNX Runtime lists CUDAExecutionProvider
    torch_cuda: bool = False  # torch imports and sees a CUDA device
    openvino: bool = False
    cpu_bf16: bool = False  # AVX-512 BF16 or AMX: OpenVINO's CPU plugin computes in bf16
    cpu_vnni: bool = False  # AVX-512 VNNI or AVX-VNNI: int8 dot products (OpenVINO int8 gains)
    nncf: bool = False  # NNCF importable: the int8 IR can be built here (the export extra)

    @property
    def gpu(self) -> bool:
        return self.torch_cuda or self.ort_cuda or self.tensorrt


@dataclass(frozen=True)
class EngineChoice:
    """The ``export`` formats to build, and the reason in words (logged and printed)."""

    detector: str  # export yolo --format
    enhancer: str  # export denoiser --format
    reason: str
    #: the detector is to run in int8, calibrated on this box's cameras (an OpenVINO IR built
    #: f32 first; the daemon's :mod:`daemon.int8` makes the int8 sibling once cameras stream)
    int8: bool = False

    @property
    def detector_suffix(self) -> str:
        return DETECTOR_SUFFIX[self.detector]

    @property
    def enhancer_suffix(self) -> str:
        return ENHANCER_SUFFIX[self.enhancer]

    def describe(self) -> str:
        int8 = " int8, calibrated on this box's cameras" if self.int8 else ""
        return (f"detector {self.detector} ({RUNTIME_NAME[self.detector]}{int8}), enhancer "
                f"{self.enhancer} ({RUNTIME_NAME[self.enhancer]}): {self.reason}")


def choose_engines(facts: BoxFacts, device: str = "auto") -> EngineChoice:
    """The fastest engine kinds for a box with ``facts``; ``device`` ``cpu`` rules out the GPU."""
    if device != "cpu" and facts.gpu:
        return _gpu_choice(facts)
    return _cpu_choice(facts)


def _gpu_choice(facts: BoxFacts) -> EngineChoice:
    if facts.tensorrt:
        return EngineChoice("engine", "engine", "TensorRT is installed: plans built for this GPU "
                            "(fp16) are the fastest engines on it")
    if facts.ort_cuda:
        return EngineChoice("onnx", "onnx", "a GPU and ONNX Runtime's CUDA provider, no TensorRT: "
                            "ONNX Runtime runs both engines on the GPU")
    return EngineChoice("torchscript", "pt2", "a GPU with PyTorch CUDA, but neither TensorRT nor "
                        "ONNX Runtime's CUDA provider: PyTorch runs both engines on the GPU (ONNX "
                        "Runtime would run them on the CPU)")


def _cpu_choice(facts: BoxFacts) -> EngineChoice:
    if not facts.openvino:
        return EngineChoice("onnx", "onnx", "no GPU and OpenVINO is not installed (pip install "
                            "openvino for the faster CPU detector): ONNX Runtime on the CPU")
    enhancer = ("; the enhancer stays on ONNX Runtime, which runs it faster than OpenVINO "
                "(docs/BENCHMARKS.md, 'Engine choice')")
    if facts.cpu_bf16:
        return EngineChoice("openvino", "onnx", "no GPU: OpenVINO runs the detector in bf16 (this "
                            "CPU has AVX-512 BF16 or AMX), 1.7x ONNX Runtime's speed at the same "
                            "accuracy" + enhancer)
    if facts.cpu_vnni and not facts.nncf:
        return EngineChoice("openvino", "onnx", "no GPU: OpenVINO runs the detector in f32 (this "
                            "CPU has VNNI but no bf16: int8 would be 1.5-1.8x faster, calibrated on "
                            "this box's cameras, but NNCF is not installed: pip install "
                            "'duskwatch[export]')" + enhancer)
    if facts.cpu_vnni:
        return EngineChoice("openvino", "onnx", "no GPU: OpenVINO runs the detector in int8, "
                            "calibrated on this box's cameras (this CPU has no bf16 but has VNNI: "
                            "NNCF int8 is 1.5-1.8x f32 per CPU second within 0.005 AP50; the f32 "
                            "IR runs until the daemon has collected frames, built the int8 one and "
                            "checked it against f32: engines.int8: auto)" + enhancer, int8=True)
    return EngineChoice("openvino", "onnx", "no GPU: OpenVINO runs the detector in f32 (this CPU "
                        "has no bf16 and no VNNI, so int8 gains little), on par with ONNX Runtime "
                        "alone and at less CPU per frame in the pipeline" + enhancer)


def engine_kind(path: str | Path) -> str | None:
    """The kind (export format) of a configured engine file; None for a Triton URL or an
    unknown suffix (nothing to compare)."""
    text = str(path)
    if "://" in text:
        return None
    return KIND_OF_SUFFIX.get(Path(text).suffix)


def kind_warnings(detector: str | Path, enhancer: str | Path | None, facts: BoxFacts,
                  device: str = "auto") -> list[str]:
    """check-config's warnings: configured engines that are not this box's fastest kind."""
    best = choose_engines(facts, device)
    out = []
    for key, path, want, suffix, verb in (
            ("detector", detector, best.detector, best.detector_suffix, "yolo"),
            ("enhancer", enhancer, best.enhancer, best.enhancer_suffix, "denoiser")):
        have = engine_kind(path) if path is not None else None
        if have is None or have == want:
            continue
        out.append(f"engines.{key} {path} runs on {RUNTIME_NAME[have]}; this box's fastest "
                   f"{key} engine is {RUNTIME_NAME[want]} ({suffix}): {best.reason}. Build it "
                   f"with `duskwatch export {verb} ... --format {want} --out NAME{suffix}` "
                   f"(or `duskwatch install-service`), or keep this one: it works, only slower")
    return out


def int8_warnings(detector: str | Path, int8_mode: str, facts: BoxFacts,
                  device: str = "auto") -> list[str]:
    """check-config's warning: the detector is an OpenVINO IR on a box whose choice is int8, and
    ``engines.int8`` is off (the daemon will not calibrate and switch to int8)."""
    from daemon.int8.sibling import is_f32_ir

    best = choose_engines(facts, device)
    if not best.int8 or int8_mode != "off" or not is_f32_ir(detector):
        return []
    return [f"engines.int8 is off and engines.detector {detector} is an OpenVINO IR: this box's "
            f"choice is int8 ({best.reason}). Set engines.int8: auto (the default) and the daemon "
            "builds and checks the int8 IR from its own cameras' frames, or build it now with "
            f"`duskwatch export openvino-int8 --ir {detector} --calib-dir DIR`"]


# -- probing ----------------------------------------------------------------------------------
def probe_box() -> BoxFacts:
    """The facts about the box this Python runs on."""
    return BoxFacts(tensorrt=_importable("tensorrt"), ort_cuda=_ort_cuda(),
                    torch_cuda=_torch_cuda(), openvino=_importable("openvino"),
                    cpu_bf16=cpu_has_bf16(), cpu_vnni=cpu_has_vnni(),
                    nncf=_importable("nncf"))


def probe_box_in(python: str = sys.executable, runner: Runner | None = None) -> BoxFacts:
    """:func:`probe_box` run by ``python`` (the interpreter the service will use); a probe that
    cannot run counts as a box with nothing but ONNX Runtime on the CPU."""
    run = runner or (lambda argv: subprocess.run(list(argv), capture_output=True, text=True))
    try:
        res = run([python, "-m", "daemon.install.engine_choice"])
        data = json.loads((res.stdout or "").strip().splitlines()[-1]) if res.returncode == 0 else {}
    except (OSError, ValueError, IndexError):
        data = {}
    known = BoxFacts.__dataclass_fields__
    return BoxFacts(**{k: bool(v) for k, v in data.items() if k in known})


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _ort_cuda() -> bool:
    if not _importable("onnxruntime"):
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _torch_cuda() -> bool:
    """Whether torch sees a GPU; torch is imported only where an NVIDIA driver is present."""
    if not Path("/proc/driver/nvidia").exists() or not _importable("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The first CPU's flags in ``cpuinfo`` (empty when it cannot be read)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when the CPU flags include AVX-512 BF16 or AMX BF16 (OpenVINO then computes in bf16)."""
    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


def cpu_has_vnni(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when the CPU has int8 dot-product instructions (AVX-512 VNNI or AVX-VNNI)."""
    return bool(cpu_flags(cpuinfo) & {"avx512_vnni", "avx_vnni"})


if __name__ == "__main__":
    print(json.dumps(asdict(probe_box())))
