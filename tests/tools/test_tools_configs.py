"""Every config in configs/ parses and its model builds, without COCO and
without downloading pretrained weights."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(REPO_ROOT, 'configs', '*.py')))
RETINANET_CONFIGS = [
    'retinanet_r50_fpn.py', 'retinanet_r50_fpn_1x_coco.py',
    'retinanet_r101_fpn.py'
]


def _load(name):
    return Config.fromfile(osp.join(REPO_ROOT, 'configs', name))


def _walk_types(obj):
    if isinstance(obj, dict):
        if isinstance(obj.get('type'), str):
            yield obj['type']
        for v in obj.values():
            yield from _walk_types(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _walk_types(v)


def test_configs_found():
    names = {osp.basename(c) for c in CONFIGS}
    assert set(RETINANET_CONFIGS + ['mmdet_reuse_example.py']) <= names


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_parses_and_model_builds(path):
    import mmretina  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)

    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmdet'
    assert 'mmretina' in cfg.custom_imports['imports']
    # Building must not need the pretrained weights: they are only loaded by
    # init_weights(), which we run with the backbone's init_cfg removed.
    if cfg.model.get('backbone') is not None:
        cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert hasattr(model, 'bbox_head')
    name = osp.basename(path)
    if name in RETINANET_CONFIGS:
        head = model.bbox_head
        for module in (head, head.loss_cls, head.prior_generator,
                       head.assigner):
            assert type(module).__module__.startswith('mmretina.'), module
    elif name == 'mmdet_reuse_example.py':
        head = model.bbox_head
        assert type(head).__module__.startswith('mmdet.')
        assert type(head.loss_cls).__module__.startswith('mmretina.')
        assert type(head.prior_generator).__module__.startswith('mmretina.')


@pytest.mark.parametrize('name', RETINANET_CONFIGS)
def test_retinanet_configs_use_mmretina_modules(name):
    cfg = _load(name)
    head = cfg.model.bbox_head
    assert head.type == 'mmretina.RetinaHead'
    assert head.anchor_generator.type == 'mmretina.AnchorGenerator'
    assert head.loss_cls.type == 'mmretina.FocalLoss'
    assert cfg.model.train_cfg.assigner.type == 'mmretina.MaxIoUAssigner'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    depth = 101 if 'r101' in name else 50
    assert cfg.model.backbone.depth == depth
    assert cfg.model.backbone.init_cfg.checkpoint == \
        f'torchvision://resnet{depth}'


@pytest.mark.parametrize('name', ['retinanet_r50_fpn.py',
                                  'retinanet_r101_fpn.py'])
def test_paper_schedule(name):
    cfg = _load(name)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == 90000
    assert cfg.train_cfg.val_interval == 10000
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == \
        ('SGD', 0.01, 0.9, 0.0001)
    assert cfg.optim_wrapper.get('clip_grad') is None  # as mmdet 3.3.0
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == \
        ('LinearLR', 0.001, 500)
    assert warmup.by_epoch is False
    assert steps.type == 'MultiStepLR' and steps.by_epoch is False
    assert steps.milestones == [60000, 80000] and steps.gamma == 0.1
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.train_dataloader.sampler.type == 'InfiniteSampler'
    ckpt = cfg.default_hooks.checkpoint
    assert ckpt.interval == 10000 and ckpt.by_epoch is False
    assert cfg.log_processor.by_epoch is False
    assert cfg.data_root == 'data/coco/'
    assert cfg.val_evaluator.type == 'CocoMetric'
    assert cfg.val_evaluator.ann_file.endswith('instances_val2017.json')
    pipe = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert pipe['Resize'].scale == (1333, 800)
    assert pipe['RandomFlip'].prob == 0.5


def test_1x_schedule():
    cfg = _load('retinanet_r50_fpn_1x_coco.py')
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.train_cfg.max_epochs == 12
    assert cfg.param_scheduler[1].milestones == [8, 11]
    assert cfg.optim_wrapper.optimizer.lr == 0.01


def test_reuse_example_mixes_mmdet_and_mmretina():
    cfg = _load('mmdet_reuse_example.py')
    types = list(_walk_types(cfg.model))
    ours = {t for t in types if t.startswith('mmretina.')}
    assert ours, 'the example must use mmretina modules'
    # the detector itself and the head are mmdet's
    assert not cfg.model.type.startswith('mmretina.')
    assert not cfg.model.bbox_head.type.startswith('mmretina.')
