"""engines.device.resolve_device: the one device resolver (engines, benchmarks, training)."""

import pytest
import torch

from engines import EngineError
from engines.device import DeviceError, resolve_device


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("word", ["gpu0", "cuda:x", "mps"])
def test_bad_words_name_the_choices(word):
    with pytest.raises(DeviceError, match="use auto, cpu, cuda or cuda:N") as info:
        resolve_device(word, "training")
    assert str(info.value).startswith("training: ")
    assert isinstance(info.value, EngineError) and isinstance(info.value, ValueError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_gpu_says_use_cpu():
    with pytest.raises(DeviceError, match="use --device cpu"):
        resolve_device("cuda:0", "x.pt2")
