"""``init_cfg=dict(type='CheckedPretrained', checkpoint=...)``: load the
pretrained weights a config asks for, or stop with an error that says how
to get them; train from scratch only where the config allows it
(``allow_scratch=True``).

``checkpoint`` is one of

* ``torchvision://resnet50`` (``resnet18`` ... ``resnet152``,
  ``wide_resnet50_2``, ...): torchvision's ImageNet file, fetched from its
  published address (the table mmengine ships,
  ``mmengine/hub/torchvision_0.12.json``) by ``torch.hub`` with its
  published hash checked (the hex digits before ``.pth`` begin the file's
  SHA-256) and kept in torch.hub's cache (``$TORCH_HOME/hub/checkpoints``,
  by default ``~/.cache/torch/hub/checkpoints``), which is read before any
  download. torchvision is not needed;
* an ``https://``, ``http://`` or ``file://`` URL, fetched the same way
  (the hash checked where the file name carries one, ``name-<sha256
  prefix>.pth``, unless ``check_hash=False``);
* a local file, or anything else mmengine's ``Pretrained`` reads (e.g.
  ``torchvision://resnet50.imagenet1k_v2`` where torchvision is installed).

Why not mmengine's ``Pretrained``: it reads ``torchvision://`` names only
with torchvision installed (``tools/install.sh`` does not install it), does
not check the hash, and its errors (``No module named 'torchvision'``) do
not say how to get the file. A silent fallback to random weights is worse:
the run looks like the recipe and is not.

Imported by the configs that use it (``custom_imports``); registered in
mmengine's ``WEIGHT_INITIALIZERS`` under a name mmengine does not use.
"""
import json
import logging
import os.path as osp
import sys
from typing import Dict, List, Optional
from urllib.parse import urlparse

import mmengine
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.model.weight_init import (PretrainedInit, initialize,
                                        update_init_info)
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import (_load_checkpoint_to_model,
                                        load_state_dict)
from torch import nn

__all__ = [
    'CheckedPretrainedInit', 'PretrainedWeightsError', 'SCRATCH_INIT',
    'TORCHVISION_URLS', 'weights_url', 'load_weights_url'
]

# mmdet's ResNet initialisation when it has no init_cfg (He et al. 2015
# for convolutions, BatchNorm / GroupNorm at identity)
SCRATCH_INIT = [
    dict(type='Kaiming', layer='Conv2d'),
    dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
]

# torchvision's published ImageNet files by name ('resnet50':
# 'https://download.pytorch.org/models/resnet50-0676ba61.pth', ...): the
# table mmengine resolves 'torchvision://NAME' with
with open(osp.join(mmengine.__path__[0], 'hub',
                   'torchvision_0.12.json')) as _f:
    TORCHVISION_URLS: Dict[str, str] = json.load(_f)

URL_SCHEMES = ('http://', 'https://', 'file://')
TORCHVISION_SCHEMES = ('torchvision://', 'modelzoo://')


class PretrainedWeightsError(RuntimeError):
    """The pretrained weights an ``init_cfg`` asks for cannot be had."""


def weights_url(checkpoint: str) -> Optional[str]:
    """The URL ``torch.hub`` fetches ``checkpoint`` from: the published file
    of a ``torchvision://NAME`` in :data:`TORCHVISION_URLS`, or the URL
    itself; None for a local file or a name mmengine resolves."""
    if checkpoint.startswith(TORCHVISION_SCHEMES):
        return TORCHVISION_URLS.get(checkpoint.split('://', 1)[1])
    if checkpoint.startswith(URL_SCHEMES):
        return checkpoint
    return None


def load_weights_url(url: str,
                     map_location: str = 'cpu',
                     check_hash: bool = True) -> dict:
    """``torch.hub.load_state_dict_from_url`` with the hash checked, rank 0
    first in a distributed run (the others then read its cached file)."""

    def fetch():
        return torch.hub.load_state_dict_from_url(
            url,
            map_location=map_location,
            progress=sys.stderr.isatty(),
            check_hash=check_hash,
            weights_only=True)

    rank, world_size = get_dist_info()
    error = None
    if rank == 0:
        try:
            state = fetch()
        except Exception as e:  # the other ranks wait at the barrier
            error = e
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            state = fetch()
    if error is not None:
        raise error
    return state


def how_to_get(checkpoint: str, url: Optional[str]) -> str:
    """What to do so that ``checkpoint`` can be had (for error messages)."""
    if url is None and checkpoint.startswith(TORCHVISION_SCHEMES):
        return ('this name is not one of the published files known without '
                f'torchvision ({", ".join(sorted(TORCHVISION_URLS))}): '
                'install torchvision to use its other names, or set '
                'init_cfg.checkpoint to a file or URL')
    if url is None:
        return ('put the file there, or set init_cfg.checkpoint to where it '
                'is')
    name = osp.basename(urlparse(url).path)
    cached = osp.join(torch.hub.get_dir(), 'checkpoints', name)
    match = torch.hub.HASH_REGEX.search(name)
    sha = (f' (its SHA-256 begins with {match.group(1)})'
           if match and match.group(1) else '')
    return (f'download {url}{sha} where there is internet, e.g. '
            f'`curl -L --create-dirs -o {cached} {url}`, and put it at '
            f"{cached} (torch.hub's cache, read before any download), or "
            'anywhere with init_cfg.checkpoint set to its path')


@WEIGHT_INITIALIZERS.register_module(name='CheckedPretrained')
class CheckedPretrainedInit(PretrainedInit):
    """mmengine's ``Pretrained`` initialiser, with torchvision's ResNets
    fetched without torchvision (hash checked), an error that says how to
    get weights that cannot be had, and training from scratch only where
    ``allow_scratch=True``.

    Args:
        checkpoint (str): ``torchvision://resnet50``, a URL or a file (see
            the module's docstring).
        prefix (str, optional), map_location (str): as ``Pretrained``.
        allow_scratch (bool): when the weights cannot be had, initialise
            with ``scratch`` and say so in one WARNING line instead of
            raising :class:`PretrainedWeightsError`. Default False.
        check_hash (bool): check a URL's file against the SHA-256 prefix in
            its name (torch.hub's convention, which torchvision's and
            mmdet's files follow). Default True.
        scratch (list[dict], optional): the init_cfg used from scratch
            (default :data:`SCRATCH_INIT`).

    From scratch, a backbone's BatchNorm statistics are trained
    (``norm_eval=False``) and no stage stays frozen (``frozen_stages=-1``):
    frozen random layers would never learn.
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: Optional[str] = None,
                 map_location: str = 'cpu',
                 allow_scratch: bool = False,
                 check_hash: bool = True,
                 scratch: Optional[List[dict]] = None) -> None:
        super().__init__(checkpoint, prefix, map_location)
        self.allow_scratch = allow_scratch
        self.check_hash = check_hash
        self.scratch = scratch if scratch is not None else SCRATCH_INIT
        self.loaded: Optional[bool] = None

    def __call__(self, module: nn.Module) -> None:
        url = weights_url(self.checkpoint)
        try:
            if url is None:
                super().__call__(module)  # a file, or mmengine's schemes
            else:
                self._load_url(module, url)
        except Exception as e:  # any way of not getting the weights
            reason = ' '.join(f'{type(e).__name__}: {e}'.split())[:300]
            where = type(module).__name__
            if not self.allow_scratch:
                raise PretrainedWeightsError(
                    f'{where}: the pretrained weights {self.checkpoint!r} '
                    f'(init_cfg.checkpoint) cannot be had: {reason}. To get '
                    f'them: {how_to_get(self.checkpoint, url)}. To train it '
                    'from scratch instead (lower accuracy, a longer '
                    'schedule), set allow_scratch=True in its init_cfg.'
                ) from e
            self.loaded = False
            print_log(
                f'{where}: pretrained weights {self.checkpoint!r} cannot be '
                f'had ({reason}); training it FROM SCRATCH as its init_cfg '
                'allows (allow_scratch=True)',
                logger='current',
                level=logging.WARNING)
            self._init_scratch(module)
            return
        self.loaded = True

    def _load_url(self, module: nn.Module, url: str) -> None:
        print_log(f'load model from: {self.checkpoint} ({url})',
                  logger='current')
        state = load_weights_url(url, self.map_location, self.check_hash)
        if self.prefix is None:
            _load_checkpoint_to_model(module, state, logger='current')
        else:
            # as mmengine's _load_checkpoint_with_prefix
            state = state.get('state_dict', state.get('model', state))
            prefix = self.prefix if self.prefix.endswith('.') else (
                self.prefix + '.')
            state = {
                k[len(prefix):]: v
                for k, v in state.items() if k.startswith(prefix)
            }
            if not state:
                raise KeyError(f'{prefix} is not in the pretrained model')
            load_state_dict(module, state, strict=False, logger='current')
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _init_scratch(self, module: nn.Module) -> None:
        initialize(module, self.scratch)
        if hasattr(module, 'norm_eval'):
            module.norm_eval = False
        if getattr(module, 'frozen_stages', -1) >= 0:
            module.frozen_stages = -1
            for p in module.parameters():
                p.requires_grad_(True)
