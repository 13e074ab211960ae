"""Tiny ONNX models for engine tests (plumbing only: no detector)."""

from __future__ import annotations

from pathlib import Path


def scale_model(path: Path, batch="batch", meta: dict | None = None) -> Path:
    """y = 2 * x with x (batch, 3, 8, 8) float32; ``batch`` an int (static) or a name (dynamic);
    ``meta`` written as ONNX metadata properties."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 8, 8])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "scale", [x], [y],
                              initializer=[two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (meta or {}).items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(model, str(path))
    return path
