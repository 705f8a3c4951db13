"""An oriented RetinaNet for the raster tests: mmrotate-dev's own
``rotated-retinanet-rbox-le90_r50_fpn_1x_dota.py`` (mmdet's ``RetinaNet`` and
``RetinaHead`` with mmrotate's ``FakeRotatedAnchorGenerator``,
``DeltaXYWHTRBBoxCoder`` and ``nms_rotated``), shrunk for speed (ResNet-18,
32 channels, one stacked conv, 2 classes, windows of ``WINDOW`` px, no
pretrained weights) and seeded. Its random weights give many rotated
detections per window, near the window edges too; the tests compare the
pipeline's outputs with the same model's detections, not accuracy.

Imported by the tests of tests/inference, tests/geo and tests/evaluation
(``load_oriented`` puts this folder on ``sys.path``).
"""
import os.path as osp

import torch

WINDOW = 128
CLASSES = ('ship', 'plane')
CONFIG = ('.mim/configs/rotated_retinanet/'
          'rotated-retinanet-rbox-le90_r50_fpn_1x_dota.py')


def oriented_config(window: int = WINDOW):
    """mmrotate's config, shrunk (an mmengine ``Config``)."""
    from mmengine.config import Config

    from mmretina.utils.mmrotate import require_mmrotate
    mmrotate = require_mmrotate('the oriented test model')
    cfg = Config.fromfile(osp.join(osp.dirname(mmrotate.__file__), CONFIG))
    m = cfg.model
    m.backbone.update(depth=18, init_cfg=None)
    m.neck.update(in_channels=[64, 128, 256, 512], out_channels=32)
    m.bbox_head.update(num_classes=len(CLASSES), in_channels=32,
                       feat_channels=32, stacked_convs=1)
    # rotated NMS is quadratic: ~3,000 random candidates a window took 1 s
    m.test_cfg.update(nms_pre=300, score_thr=0.3, max_per_img=100)
    # windows are read at their size: Resize to the window (scale 1 for a
    # whole window) keeps mmdet's scale_factor bookkeeping
    # (and --tile auto reads the window from it)
    cfg.test_pipeline = [
        dict(type='mmdet.LoadImageFromFile'),
        dict(type='mmdet.Resize', scale=(window, window), keep_ratio=True),
        dict(type='mmdet.PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                        'scale_factor'))
    ]
    cfg.test_dataloader.dataset.pipeline = cfg.test_pipeline
    return cfg


def oriented_model(window: int = WINDOW, seed: int = 0):
    """The shrunk model, seeded, on the CPU, with ``dataset_meta``."""
    from mmengine.registry import DefaultScope, init_default_scope

    from mmretina.deploy.pytorch import init_model
    cfg = oriented_config(window)
    torch.manual_seed(seed)
    before = DefaultScope.get_current_instance()
    model = init_model(cfg, None, device='cpu')
    if before is not None:  # init_detector left mmrotate's scope current
        init_default_scope(before.scope_name)
    with torch.no_grad():  # more confident random detections
        model.bbox_head.retina_cls.bias.fill_(-1.5)
    model.dataset_meta = dict(classes=CLASSES)
    return model


def write_oriented(folder: str, model=None):
    """The model as files ``mmretina predict`` takes: (config, checkpoint)
    in ``folder``."""
    model = model if model is not None else oriented_model()
    config = osp.join(folder, 'rotated_retinanet_tiny.py')
    ckpt = osp.join(folder, 'rotated_retinanet_tiny.pth')
    model.cfg.dump(config)
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=CLASSES))), ckpt)
    return config, ckpt
