"""configs/rotated: mmrotate-dev's own rotated RetinaNet configs, inherited
through ``mmrotate::``, with mmretina's four modules swapped in and nothing
else changed; the demo and its axis-aligned twin differ only in the box
type."""
import os.path as osp

import pytest
from mmengine.config import Config

mmrotate = pytest.importorskip('mmrotate')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ROTATED = osp.join(REPO, 'configs', 'rotated')
THEIRS = osp.join(osp.dirname(mmrotate.__file__), '.mim', 'configs',
                  'rotated_retinanet')
SWAPPED = {
    ('model', 'bbox_head', 'type'): ('mmdet.RetinaHead', 'mmretina.RetinaHead'),
    ('model', 'bbox_head', 'loss_cls', 'type'):
    ('mmdet.FocalLoss', 'mmretina.FocalLoss'),
    ('model', 'bbox_head', 'anchor_generator', 'type'):
    ('FakeRotatedAnchorGenerator', 'mmretina.FakeRotatedAnchorGenerator'),
    ('model', 'train_cfg', 'assigner', 'type'):
    ('mmdet.MaxIoUAssigner', 'mmretina.MaxIoUAssigner'),
}


def flat(d, prefix=()):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, prefix + (k, )))
        else:
            out[prefix + (k, )] = v
    return out


def without_scope(d):
    """mmengine marks what a config inherits from another package with
    ``_scope_``; compare the rest."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != '_scope_'}
        if isinstance(v, (list, tuple)):
            return type(v)(strip(x) for x in v)
        return v
    return {k: strip(v) for k, v in d.items() if '_scope_' not in k}


@pytest.mark.parametrize('ours,theirs', [
    ('rotated_retinanet_r50_fpn_1x_dota_le90.py',
     'rotated-retinanet-rbox-le90_r50_fpn_1x_dota.py'),
    ('rotated_retinanet_r50_fpn_1x_dota_oc.py',
     'rotated-retinanet-rbox-oc_r50_fpn_1x_dota.py'),
])
def test_mmrotate_config_with_four_types_swapped(ours, theirs):
    a = without_scope(flat(Config.fromfile(osp.join(ROTATED, ours))
                           .to_dict()))
    b = without_scope(flat(Config.fromfile(osp.join(THEIRS, theirs))
                           .to_dict()))
    assert a.pop(('custom_imports', 'imports')) == ['mmretina']
    assert a.pop(('custom_imports', 'allow_failed_imports')) is False
    for key, (old, new) in SWAPPED.items():
        assert (b.pop(key), a.pop(key)) == (old, new)
    assert a == b


def test_demo_twin_differs_only_in_the_box_type():
    rot = Config.fromfile(
        osp.join(ROTATED, 'rotated_retinanet_r18_fpn_oriented_demo.py'))
    hbox = Config.fromfile(
        osp.join(ROTATED, 'retinanet_r18_fpn_oriented_demo_hbox.py'))
    a, b = flat(rot.to_dict()), flat(hbox.to_dict())
    differ = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert {k[:3] for k in differ} == {
        ('custom_imports', 'imports'),
        ('model', 'data_preprocessor', 'boxtype2tensor'),
        ('model', 'bbox_head', 'anchor_generator'),
        ('model', 'bbox_head', 'bbox_coder'),
        ('model', 'train_cfg', 'assigner'),
        ('model', 'test_cfg', 'nms'),
        ('train_pipeline', ), ('train_dataloader', 'dataset', 'pipeline'),
        ('val_evaluator', 'type'), ('test_evaluator', 'type'),
    } | {k[:3] for k in differ if k[:2] == ('train_dataloader', 'dataset')}
    # same budget, data and seed
    for key in ('train_cfg', 'optim_wrapper', 'param_scheduler',
                'custom_hooks', 'randomness', 'test_dataloader',
                'val_dataloader'):
        assert rot[key] == hbox[key], key
    assert rot.model.backbone == hbox.model.backbone
    assert rot.model.neck == hbox.model.neck
    assert hbox.train_dataloader.dataset.pipeline[2] == dict(
        type='ConvertBoxType', box_type_mapping=dict(gt_bboxes='hbox'))
