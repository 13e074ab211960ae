"""ONNX -> OpenVINO IR (``model.xml`` + ``model.bin``), the CPU engine of choice.

The IR keeps the ONNX graph's dynamic dimensions (a ``--dynamic`` export runs 16:9 frames at
384x640, as on ONNX Runtime) and float32 weights: the CPU plugin decides the compute precision
when the engine is compiled (bf16 on CPUs with AVX-512 BF16 or AMX, f32 elsewhere). The class
names, stride and input size go into the IR's ``model_info`` section as well as the sidecar, so
the IR is self-describing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from export.errors import ExportError


def onnx_to_openvino(src: Path, out: Path, info: Mapping[str, Any]) -> Path:
    """Convert the ONNX file ``src`` to ``out`` (``.xml``; ``.bin`` beside it)."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise ExportError(f"--format openvino needs the openvino package ({exc}); install it with "
                          "`pip install 'openvino>=2024.0'` (a dependency of duskwatch)") from exc
    if Path(out).suffix != ".xml":
        raise ExportError(f"--out {out}: an OpenVINO export must end in .xml (its weights go to "
                          "the .bin beside it)")
    try:
        model = ov.convert_model(str(src))
    except Exception as exc:  # OpenVINO's frontend raises its own exception types
        raise ExportError(f"OpenVINO could not convert {src.name}: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0][:300]}") from exc
    for key, value in info.items():
        model.set_rt_info(str(value), ["model_info", key])
    ov.save_model(model, str(out), compress_to_fp16=False)
    return Path(out)
