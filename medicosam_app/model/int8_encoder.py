"""The image encoder with int8 linear layers: dynamic quantisation for CPUs without fast bf16.

On a CPU without AMX or AVX-512 BF16 (the AMD EPYC these servers have run on) bf16 is slower than fp32,
but int8 matrix products run on VNNI/AVX2 integer units: the ViT-B encoder's linear layers (qkv,
projection, MLP: ~90 % of its work) quantised per row at load and per tensor at run time give a ~1.4×
faster embedding with masks that agree with fp32's (measured by ``benchmarks/encoder_speed.py``, and at
every model load by ``precision auto`` before it is chosen).

The quantised copy is made once per encoder and shared by every predictor of that encoder, so a
finetuned interactive decoder (which shares the checkpoint's encoder) costs no second copy. Attention
itself (softmax of q·kᵀ with the relative-position bias), LayerNorm, GELU and the convolutional neck stay
in fp32.

torch marks its quantised tensors deprecated (to move to the ``torchao`` package); while they are there this
is the eager-mode int8 path that needs nothing else installed. Should a torch release drop them, making
the copy fails with a RuntimeError and ``precision auto`` simply leaves int8 out.
"""

from __future__ import annotations

import copy
import threading
import warnings
import weakref

import torch
from torch import nn

_copies: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def int8_supported() -> bool:
    """Whether this torch build has a quantised-kernel engine for the CPU (fbgemm on x86, qnnpack on ARM)."""
    return any(engine != "none" for engine in torch.backends.quantized.supported_engines)


def int8_encoder(encoder: nn.Module) -> nn.Module:
    """``encoder`` with its ``nn.Linear`` layers dynamically quantised to int8 (made once, then shared).

    The original is left untouched: fp32 predictors, training and the precision probe's reference keep
    using it.
    """
    if not int8_supported():
        raise RuntimeError("this torch build has no quantised CPU kernels (int8): use fp32 or bf16")
    with _lock:
        quantised = _copies.get(encoder)
        if quantised is None:
            try:
                with warnings.catch_warnings():  # the deprecation notice, once per model load, says nothing to users
                    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
                    quantised = torch.ao.quantization.quantize_dynamic(
                        copy.deepcopy(encoder).cpu().eval(), {nn.Linear}, dtype=torch.qint8
                    )
            except (AttributeError, NotImplementedError) as error:
                raise RuntimeError(f"int8 quantisation is not available in this torch: {error}") from error
            for parameter in quantised.parameters():
                parameter.requires_grad_(False)
            _copies[encoder] = quantised
        return quantised
