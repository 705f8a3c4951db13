"""TorchvisionAnchorGenerator: torchvision's anchor values, strides and
order, with mmretina's generator interface. (Equality with torchvision's own
anchors on real inputs is tested in tests/models/converters.)"""
import pytest
import torch
from mmengine.structures import InstanceData

from mmretina.models.task_modules import (AnchorGenerator,
                                          TorchvisionAnchorGenerator)
from mmretina.models.task_modules.prior_generators import \
    torchvision_anchor_sizes
from mmretina.registry import MODELS, TASK_UTILS

SIZES_800 = [(100, 100), (50, 50), (25, 25), (13, 13), (7, 7)]


def test_default_sizes_are_truncated_integers():
    assert torchvision_anchor_sizes() == [[32, 40, 50], [64, 80, 101],
                                          [128, 161, 203], [256, 322, 406],
                                          [512, 645, 812]]


def test_base_anchors_are_rounded_half_boxes():
    gen = TASK_UTILS.build(dict(type='mmretina.TorchvisionAnchorGenerator',
                                sizes=torchvision_anchor_sizes()))
    assert gen.num_base_priors == [9] * 5
    # ratio 0.5 (h / w), size 32: w = 32 * sqrt(2) = 45.25, h = 22.63;
    # halves 22.63, 11.31 round to 23, 11
    assert gen.base_anchors[0][0].tolist() == [-23., -11., 23., 11.]
    # ratio 1, size 101 (level 2): 50.5 rounds half to even -> 50
    assert gen.base_anchors[1][4].tolist() == [-40., -40., 40., 40.]
    assert gen.base_anchors[1][5].tolist() == [-50., -50., 50., 50.]
    for level in gen.base_anchors:
        assert torch.equal(level, level.round())


def test_strides_are_input_size_over_feature_size():
    """800 px padded input: P6 / P7 have 13 / 7 cells, so torchvision's
    strides are 800 // 13 = 61 and 800 // 7 = 114."""
    gen = TorchvisionAnchorGenerator(torchvision_anchor_sizes())
    assert gen.level_strides(SIZES_800) == [(8, 8), (16, 16), (32, 32),
                                            (61, 61), (114, 114)]
    priors = gen.grid_priors(SIZES_800, device='cpu')
    assert [len(p) for p in priors] == [h * w * 9 for h, w in SIZES_800]
    # P6, cell (y=2, x=1), ratio-1 anchor of size 322 (index 4)
    a = priors[3][(2 * 13 + 1) * 9 + 4]
    assert a.tolist() == [61 - 161., 122 - 161., 61 + 161., 122 + 161.]
    # sizes divisible by 4 at P5: the nominal strides
    sizes = [(96, 64), (48, 32), (24, 16), (12, 8), (6, 4)]
    assert gen.level_strides(sizes) == [(8, 8), (16, 16), (32, 32),
                                        (64, 64), (128, 128)]
    layout = gen.grid_layout(SIZES_800)
    assert [lv.stride_w for lv in layout] == [8, 16, 32, 61, 114]
    assert layout[4].start == sum(h * w * 9 for h, w in SIZES_800[:4])


def test_anchor_order_is_mmdet_scale_major():
    """Where both libraries' anchors are exact, they are equal in the same
    order: ratio major (mmdet's scale_major=True). The head's output
    channels need no permutation."""
    tv = TorchvisionAnchorGenerator(sizes=[[32, 64]], aspect_ratios=[1., 4.],
                                    strides=[8])
    mm = AnchorGenerator(strides=[8], ratios=[1., 4.], scales=[1., 2.],
                         base_sizes=[32], scale_major=True)
    assert torch.equal(tv.base_anchors[0], mm.base_anchors[0])
    assert torch.equal(
        tv.grid_priors([(3, 5)], device='cpu')[0],
        mm.grid_priors([(3, 5)], device='cpu')[0])


def test_valid_flags_use_the_level_strides():
    gen = TorchvisionAnchorGenerator(torchvision_anchor_sizes())
    full = gen.batch_valid_flags(SIZES_800, [(800, 800), (400, 800)],
                                 device='cpu')
    assert full.shape == (2, sum(h * w * 9 for h, w in SIZES_800))
    assert full[0].all()
    # a 400 px high image in the 800 px batch: P7 rows of stride 114 below
    # ceil(400 / 114) = 4 are invalid
    p7 = gen.valid_flags(SIZES_800, (400, 800), device='cpu')[4]
    rows = p7.view(7, 7, 9)[:, 0, 0]
    assert rows.tolist() == [True] * 4 + [False] * 3
    assert torch.equal(torch.cat(gen.valid_flags(SIZES_800, (400, 800),
                                                 device='cpu')), full[1])


def test_single_level_calls_are_refused():
    gen = TorchvisionAnchorGenerator(torchvision_anchor_sizes())
    with pytest.raises(NotImplementedError, match='call grid_priors'):
        gen.single_level_grid_priors((13, 13), 3, device='cpu')
    with pytest.raises(ValueError, match='5 levels configured, got 2'):
        gen.grid_priors(SIZES_800[:2], device='cpu')
    with pytest.raises(ValueError, match='one list of sizes per stride'):
        TorchvisionAnchorGenerator([[32]], strides=[8, 16])


def test_windowed_assignment_equals_dense():
    """mmretina's assigner computes IoUs near each ground truth from
    grid_layout; with torchvision's strides it gives the dense result."""
    head = MODELS.build(dict(
        type='mmretina.RetinaHead', num_classes=2, in_channels=8,
        stacked_convs=0, feat_channels=8,
        anchor_generator=dict(type='mmretina.TorchvisionAnchorGenerator',
                              sizes=torchvision_anchor_sizes()),
        train_cfg=dict(
            assigner=dict(type='mmretina.MaxIoUAssigner', pos_iou_thr=0.5,
                          neg_iou_thr=0.4, min_pos_iou=0,
                          ignore_iof_thr=-1),
            sampler=dict(type='PseudoSampler'), allowed_border=-1,
            pos_weight=-1, debug=False)))
    levels, anchors = head._priors(SIZES_800, torch.float32, 'cpu')
    metas = [dict(img_shape=(800, 800), pad_shape=(800, 800))]
    valid = head._batch_valid_flags(SIZES_800, metas, 'cpu')
    gt = InstanceData(
        bboxes=torch.tensor([[10., 20., 60., 50.], [300., 310., 700., 790.],
                             [700., 0., 800., 420.]]),
        labels=torch.tensor([0, 1, 1]))
    dense = head.get_targets(anchors, valid, [gt], metas)
    windowed = head.get_targets(anchors, valid, [gt], metas,
                                featmap_sizes=SIZES_800)
    assert torch.equal(dense.labels, windowed.labels)
    assert torch.equal(dense.pos_inds, windowed.pos_inds)
    assert dense.pos_inds.size(0) > 0
