"""Triton Python-backend model: one of our ONNX exports run by ONNX Runtime or OpenVINO.

``duskwatch export triton --server cpu`` copies this file into ``REPO/MODEL/1/model.py`` beside
``model.onnx``. It runs inside Triton's Python backend (``triton_python_backend_utils`` exists
only there), in the server's own Python environment, which needs numpy and onnxruntime (or
openvino). It imports nothing from duskwatch.

Triton's dynamic batcher hands :meth:`TritonPythonModel.execute` several requests at once; their
inputs are joined into one batch, run once, and split back. A model exported with a fixed batch
of one (the shared int8 COCO weights) runs image by image instead. The config's parameters pick
the runtime (``runtime``: onnxruntime or openvino), its threads (``threads``) and, for ONNX
Runtime, the device (``device``: ``cuda:N`` uses its CUDA provider when the server's environment
has onnxruntime-gpu, and fails to load otherwise: a GPU asked for is never dropped silently).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.inputs = [t["name"] for t in cfg["input"]]
        self.outputs = [t["name"] for t in cfg["output"]]
        threads = int(params.get("threads") or 0)
        if params.get("runtime", "onnxruntime") == "openvino":
            self.run, self.one_at_a_time = _openvino(path, self.outputs, threads)
        else:
            self.run, self.one_at_a_time = _onnxruntime(path, self.outputs, threads,
                                                        params.get("device") or "cpu")

    def execute(self, requests):
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs}
                 for r in requests]
        sizes = [len(f[self.inputs[0]]) for f in feeds]
        batch = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
        try:
            outs = self._run_batch(batch)
        except Exception as exc:  # every request of the batch gets the error
            err = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=err) for _ in requests]
        responses, start = [], 0
        for n in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(outs[name][start:start + n]))
                       for name in self.outputs]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses

    def _run_batch(self, batch):
        if not self.one_at_a_time:
            return self.run(batch)
        n = len(next(iter(batch.values())))
        parts = [self.run({k: v[i:i + 1] for k, v in batch.items()}) for i in range(n)]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.outputs}


def _onnxruntime(path, outputs, threads, device):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
    session = ort.InferenceSession(path, sess_options=opts, providers=providers)
    if device.startswith("cuda") and session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"device {device} asked for, but ONNX Runtime runs this model on "
                           f"{session.get_providers()}: install onnxruntime-gpu in the server's "
                           "environment, or export the repository with --device cpu")
    first = session.get_inputs()[0].shape[0]

    def run(feed):
        return dict(zip(outputs, session.run(outputs, feed)))

    return run, first == 1


def _openvino(path, outputs, threads):
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
    compiled = core.compile_model(path, "CPU", config)
    first = compiled.inputs[0].get_partial_shape()[0]
    request = compiled.create_infer_request()

    def run(feed):
        result = request.infer(feed)
        return {name: np.asarray(result[compiled.output(name)]) for name in outputs}

    return run, first.is_static and first.get_length() == 1
