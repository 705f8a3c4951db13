"""init_cfg type 'PretrainedOrScratch': the weights where they can be had,
else one warning line and a backbone trained from scratch."""
import logging
import os.path as osp

import torch
from mmdet.registry import MODELS
from mmengine.logging import MMLogger

import mmretina.models.pretrained_init  # noqa: F401  (registers it)

RECIPE = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
    'configs', 'retinanet_r50_fpn_gis_pretrained.py')


def resnet(checkpoint, **kw):
    cfg = dict(type='ResNet', depth=18, base_channels=8, stem_channels=8,
               out_indices=(3, ), frozen_stages=1, norm_eval=True,
               init_cfg=dict(type='PretrainedOrScratch',
                             checkpoint=checkpoint))
    cfg.update(kw)
    return MODELS.build(cfg)


class Lines(logging.Handler):

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_local_weights_are_loaded(tmp_path):
    torch.manual_seed(1)
    src = resnet(None, init_cfg=None)
    path = tmp_path / 'r18.pth'
    torch.save(src.state_dict(), path)
    net = resnet(str(path))
    net.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    assert net.norm_eval and net.frozen_stages == 1


def test_unavailable_weights_one_warning_then_from_scratch(tmp_path):
    logger = MMLogger.get_current_instance()
    handler = Lines()
    logger.addHandler(handler)
    try:
        # torchvision is not installed here and there is no internet; a
        # missing local file fails the same way
        for ckpt in ('torchvision://resnet50', str(tmp_path / 'none.pth')):
            handler.records.clear()
            net = resnet(ckpt)
            net.init_weights()
            warn = [r for r in handler.records
                    if r.levelno >= logging.WARNING]
            assert len(warn) == 1, [r.getMessage() for r in warn]
            msg = warn[0].getMessage()
            assert ckpt in msg and 'FROM SCRATCH' in msg
            # scratch init (Kaiming convs, BN at identity), nothing frozen
            assert torch.all(net.bn1.weight == 1)
            assert not net.norm_eval and net.frozen_stages == -1
            assert all(p.requires_grad for p in net.parameters())
            net.train()
            assert net.bn1.training
    finally:
        logger.removeHandler(handler)


def test_recipe_config_uses_it_and_ignores_crowd_regions():
    from mmengine.config import Config
    cfg = Config.fromfile(RECIPE)
    assert cfg.model.backbone.init_cfg.type == 'PretrainedOrScratch'
    assert cfg.model.backbone.init_cfg.checkpoint == 'torchvision://resnet50'
    assert cfg.model.train_cfg.assigner.ignore_iof_thr > 0
    assert 'mmretina.models.pretrained_init' in cfg.custom_imports.imports
