"""``init_cfg=dict(type='PretrainedOrScratch', checkpoint=...)``: load
pretrained weights where they can be had, else say so in one log line and
initialise for training from scratch.

Real projects start from an ImageNet-pretrained backbone
(``torchvision://resnet50``, an ``https://`` URL or a local file), but a
machine without internet, without torchvision or with a mistyped path
should still train, and the log must say plainly that it does so from
scratch. mmengine's ``Pretrained`` raises instead.

Imported by the configs that use it (``custom_imports``); registered in
mmengine's ``WEIGHT_INITIALIZERS`` under a name mmengine does not use.
"""
import logging
from typing import List, Optional

from mmengine.logging import print_log
from mmengine.model.weight_init import PretrainedInit, initialize
from mmengine.registry import WEIGHT_INITIALIZERS

__all__ = ['PretrainedOrScratchInit', 'SCRATCH_INIT']

# mmdet's ResNet initialisation when it has no init_cfg (He et al. 2015
# for convolutions, BatchNorm / GroupNorm at identity)
SCRATCH_INIT = [
    dict(type='Kaiming', layer='Conv2d'),
    dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
]


@WEIGHT_INITIALIZERS.register_module(name='PretrainedOrScratch')
class PretrainedOrScratchInit(PretrainedInit):
    """mmengine's ``Pretrained`` initialiser that falls back to training
    from scratch.

    Args:
        checkpoint (str): ``torchvision://resnet50``, a URL or a file.
        prefix (str, optional), map_location (str): as ``Pretrained``.
        scratch (list[dict], optional): the init_cfg used when the weights
            cannot be had (default :data:`SCRATCH_INIT`).

    From scratch, a backbone's BatchNorm statistics are trained
    (``norm_eval=False``) and no stage stays frozen (``frozen_stages=-1``):
    frozen random layers would never learn.
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: Optional[str] = None,
                 map_location: str = 'cpu',
                 scratch: Optional[List[dict]] = None) -> None:
        super().__init__(checkpoint, prefix, map_location)
        self.scratch = scratch if scratch is not None else SCRATCH_INIT
        self.loaded: Optional[bool] = None

    def __call__(self, module) -> None:
        try:
            super().__call__(module)
            self.loaded = True
            return
        except Exception as e:  # any way of not getting the weights
            reason = ' '.join(f'{type(e).__name__}: {e}'.split())[:200]
        self.loaded = False
        print_log(
            f'{type(module).__name__}: pretrained weights '
            f'{self.checkpoint!r} cannot be had ({reason}); training it '
            'FROM SCRATCH instead (expect lower accuracy and a longer '
            'schedule; put the file on disk and set init_cfg.checkpoint to '
            'its path to start from it)',
            logger='current', level=logging.WARNING)
        initialize(module, self.scratch)
        if hasattr(module, 'norm_eval'):
            module.norm_eval = False
        if getattr(module, 'frozen_stages', -1) >= 0:
            module.frozen_stages = -1
            for p in module.parameters():
                p.requires_grad_(True)
