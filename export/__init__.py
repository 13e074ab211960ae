"""Offline tools: YOLO export, the denoiser's degradation model, training, distillation,
ONNX/TensorRT building and parity checks. Knows no camera."""
