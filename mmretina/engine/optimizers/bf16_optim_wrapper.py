"""bfloat16 mixed precision that also runs on CPUs.

mmengine's ``AmpOptimWrapper`` (what ``tools/train.py --amp`` selects) is
fp16 with a gradient scaler and refuses to start without an accelerator.
``mmretina.BF16OptimWrapper`` runs the forward pass and the losses under
``torch.autocast(dtype=torch.bfloat16)`` on the model's device, CPU included.
bf16 has fp32's exponent range, so no loss scaling is needed; parameters,
gradients and optimizer state stay fp32.

On a CPU with native bf16 (AVX512-BF16 / AMX, e.g. Xeon Sapphire Rapids)
oneDNN runs the convolutions about twice as fast as fp32. Without it bf16 is
emulated and slower than fp32, so ``enabled='auto'`` (the default) falls
back to fp32 there, with a warning; ``enabled=True`` forces bf16.

mmretina's ``RetinaHead`` computes its losses in fp32 (box deltas are cast
before decoding; a bf16 box coordinate near 400 px is only 2 px exact).

Example::

    optim_wrapper = dict(
        type='mmretina.BF16OptimWrapper',
        optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
"""
from contextlib import contextmanager
from typing import Union

import torch
from torch import nn
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast

from mmretina.registry import OPTIM_WRAPPERS


def bf16_supported(device_type: str) -> bool:
    """Whether ``device_type`` ('cpu' or 'cuda') runs bf16 natively."""
    if device_type == 'cuda':
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == 'cpu':
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def bf16_enabled(enabled: Union[bool, str], bf16_native: bool) -> bool:
    """Whether ``BF16OptimWrapper(enabled=enabled)`` trains in bf16 on a
    device that runs bf16 natively (``bf16_native``) or not: True and False
    as given; 'auto' only where bf16 is native (emulated bf16 is slower
    than fp32)."""
    return bf16_native if enabled == 'auto' else bool(enabled)


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward/loss context is bf16 autocast.

    Args:
        enabled (bool | str): True: always autocast; False: plain fp32;
            'auto' (default): autocast where the device runs bf16 natively
            (see :func:`bf16_supported`, :func:`bf16_enabled`), fp32 with
            a warning elsewhere.
        **kwargs: ``OptimWrapper``'s arguments (``optimizer``,
            ``clip_grad``, ``accumulative_counts``).
    """

    def __init__(self, enabled: Union[bool, str] = 'auto', **kwargs):
        if enabled not in (True, False, 'auto'):
            raise ValueError('mmretina.BF16OptimWrapper: enabled must be '
                             f"True, False or 'auto', got {enabled!r}")
        super().__init__(**kwargs)
        self.enabled = enabled
        self._decided = {}

    def _use_bf16(self, device_type: str) -> bool:
        if device_type not in self._decided:
            native = bf16_supported(device_type)
            self._decided[device_type] = bf16_enabled(self.enabled, native)
            if self.enabled == 'auto' and not native:
                print_log(
                    f'mmretina.BF16OptimWrapper: this {device_type} has no '
                    'native bfloat16; training in fp32 (set enabled=True to '
                    'force bf16).', logger='current', level=30)
        return self._decided[device_type]

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient-accumulation context of ``OptimWrapper`` plus bf16
        autocast on the device of ``model``'s parameters."""
        param = next(model.parameters(), None)
        device_type = 'cpu' if param is None else param.device.type
        use = self._use_bf16(device_type)
        with super().optim_context(model), autocast(
                device_type=device_type, dtype=torch.bfloat16, enabled=use):
            yield
