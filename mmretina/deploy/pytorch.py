"""The PyTorch runtime of the tiled detection: an mmdet detector and its
config's test pipeline as a backend (list of BGR images -> list of
``InstanceData``), the interface every runtime of :mod:`mmretina.deploy`
has."""
import copy
from typing import List, Optional

import numpy as np
import torch
from mmengine.structures import InstanceData

__all__ = ['PytorchBackend', 'init_model', 'optimize_for_cpu']


def init_model(cfg, checkpoint: Optional[str] = None, device: str = 'cpu',
               cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """mmdet's ``init_detector``, with mmrotate's modules registered first
    when the config is in mmrotate's scope (its ``rotated-retinanet-*``
    configs, an oriented model: :func:`~mmretina.utils.mmrotate.
    require_mmrotate`, an ImportError naming the config without the
    rotated extra).

    Args:
        cfg (str | Config): the model's config.
        checkpoint (str, optional): its weights.
        device (str): ``'cpu'``, ``'cuda:0'``, ...
        cfg_options (dict, optional): overrides of the config.
    """
    from mmdet.apis import init_detector
    from mmengine.config import Config

    from mmretina.utils.mmrotate import require_for_config
    if isinstance(cfg, str):
        cfg = Config.fromfile(cfg)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    require_for_config(cfg)
    return init_detector(cfg, checkpoint, device=device)


def optimize_for_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """Make an eval-mode detector faster on a CPU, in place: every
    conv + BatchNorm pair fused into one conv (``mmcv.cnn.fuse_conv_bn``)
    and the weights in channels-last memory format (oneDNN's preferred
    layout; the convolutions then return channels-last maps, which the
    head's flattening handles).

    Detections equal the unfused model's up to float rounding (fused
    features differ by ~1e-5). Measured on the DeepForest demo model,
    1 x 400 x 400, fp32 with oneDNN limited to AVX2: fused 1.17x, fused +
    channels-last 1.46x (docs/user_guides/speed.md). Inference only: the fused
    model has no BatchNorm to train.

    Args:
        model (nn.Module): a detector on the CPU.

    Returns:
        nn.Module: ``model``, in eval mode.
    """
    from mmcv.cnn import fuse_conv_bn
    if any(p.device.type != 'cpu' for p in model.parameters()):
        raise ValueError('optimize_for_cpu: the model is not on the CPU')
    model.eval()
    fuse_conv_bn(model)
    return model.to(memory_format=torch.channels_last)


class PytorchBackend:
    """An mmdet detector with its config's test pipeline, as mmdet's
    ``inference_detector`` runs it on an ndarray (the pipeline's loading
    transform replaced by ``mmdet.LoadImageFromNDArray``), batched.

    Args:
        model (nn.Module): a detector from ``mmdet.apis.init_detector``
            (it carries ``cfg`` and ``dataset_meta``).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        from mmcv.transforms import Compose
        from mmdet.utils import get_test_pipeline_cfg
        from mmengine.registry import DefaultScope
        self.model = model
        pipeline = get_test_pipeline_cfg(copy.deepcopy(model.cfg))
        pipeline[0].type = 'mmdet.LoadImageFromNDArray'
        # transforms looked up in the model's own scope, not in the scope
        # of whichever model was loaded last (init_detector sets it: after
        # an mmrotate model, mmdet's 'PackDetInputs' is not found)
        with DefaultScope.overwrite_default_scope(
                model.cfg.get('default_scope', 'mmdet')):
            self.pipeline = Compose(pipeline)
        meta = getattr(model, 'dataset_meta', None) or {}
        self.classes = tuple(meta.get('classes', ()))
        self.palette = meta.get('palette')
        test_cfg = model.cfg.model.get('test_cfg', None) or {}
        self.nms_iou = float(
            (test_cfg.get('nms', None) or {}).get('iou_threshold', 0.5))

    def __call__(self, imgs: List[np.ndarray]) -> List[InstanceData]:
        data = [self.pipeline(dict(img=img, img_id=0)) for img in imgs]
        batch = dict(
            inputs=[d['inputs'] for d in data],
            data_samples=[d['data_samples'] for d in data])
        with torch.no_grad():
            results = self.model.test_step(batch)
        return [r.pred_instances for r in results]
