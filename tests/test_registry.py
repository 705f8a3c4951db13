"""The mmretina scope: our four modules by prefix, everything else mmdet."""
import pytest
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmengine.registry import DefaultScope

import mmretina
from mmretina.registry import MODELS, TASK_UTILS


def test_registries_are_children_of_mmdet():
    assert MODELS.scope == TASK_UTILS.scope == 'mmretina'
    assert MODELS.parent is MMDET_MODELS
    assert TASK_UTILS.parent is MMDET_TASK_UTILS


@pytest.mark.parametrize('registry,name,cfg', [
    (MMDET_MODELS, 'FocalLoss', {}),
    (MMDET_MODELS, 'RetinaHead', dict(num_classes=3, in_channels=8)),
    (MMDET_TASK_UTILS, 'AnchorGenerator',
     dict(strides=[8], ratios=[1.0], scales=[4])),
    (MMDET_TASK_UTILS, 'MaxIoUAssigner',
     dict(pos_iou_thr=0.5, neg_iou_thr=0.4)),
])
def test_prefixed_names_resolve_to_ours_under_mmdet_scope(
        registry, name, cfg):
    with DefaultScope.overwrite_default_scope('mmdet'):
        ours = registry.build(dict(type=f'mmretina.{name}', **cfg))
        theirs = registry.build(dict(type=name, **cfg))
    assert type(ours).__module__.startswith('mmretina.')
    assert type(theirs).__module__.startswith('mmdet.')


def test_mmdet_names_fall_through_from_our_registry():
    for name in ('ResNet', 'FPN', 'L1Loss', 'RetinaNet'):
        assert MODELS.get(name).__module__.startswith('mmdet.')
    for name in ('DeltaXYWHBBoxCoder', 'BboxOverlaps2D', 'PseudoSampler'):
        assert TASK_UTILS.get(name).__module__.startswith('mmdet.')


def test_we_do_not_override_mmdet_names():
    assert MMDET_MODELS.get('RetinaHead').__module__.startswith('mmdet.')
    assert MMDET_MODELS.get('FocalLoss').__module__.startswith('mmdet.')


def test_version():
    assert mmretina.__version__.count('.') == 2
