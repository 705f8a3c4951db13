"""IoU engines: named reductions, dense == windowed, one window bound."""
import pytest
import torch

from mmretina.models.task_modules import AnchorGenerator
from mmretina.models.task_modules.assigners import iou_engines
from mmretina.structures import pairwise_iou


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    anchors = AnchorGenerator(octave_base_scale=4, scales_per_octave=3,
                              ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32])
    sizes = [(24, 32), (12, 16), (6, 8)]
    priors = torch.cat(anchors.grid_priors(sizes, device='cpu'))
    xy = torch.rand(2, 8, 2, generator=gen) * 200
    wh = 8 + torch.rand(2, 8, 2, generator=gen) * 80
    gts = torch.cat([xy, xy + wh], -1)
    valid = torch.ones(2, 8, dtype=torch.bool)
    valid[1, 5:] = False
    return priors, gts, valid, anchors.grid_layout(sizes)


def test_dense_reductions_are_named_and_match_the_iou_matrix():
    priors, gts, valid, _ = _problem()
    red = iou_engines.dense_reductions(priors, gts, valid, None, 0., True)
    assert isinstance(red, iou_engines.IoUReductions)
    ious = pairwise_iou(gts, priors).masked_fill(~valid[:, :, None], 0)
    assert torch.equal(red.max_overlaps, ious.max(dim=1).values)
    assert torch.equal(red.argmax, ious.max(dim=1).indices)
    assert torch.equal(red.gt_max, ious.max(dim=2).values)
    assert torch.equal(red.gt_argmax, ious.max(dim=2).indices)
    # low: each anchor at some eligible gt's best IoU takes the last such gt
    rank = iou_engines.low_quality_rank(valid, red.gt_max, 0.)
    hit = ious == red.gt_max[:, :, None]
    expected = (hit * rank[:, :, None]).amax(dim=1)
    assert torch.equal(red.low, expected)
    assert iou_engines.dense_reductions(priors, gts, valid, None, 0.,
                                        False).low is None


@pytest.mark.parametrize('assign_all', [True, False])
def test_windowed_reductions_equal_dense_field_by_field(assign_all):
    priors, gts, valid, layout = _problem(1)
    excluded = torch.zeros(2, len(priors), dtype=torch.bool)
    excluded[0, ::7] = True
    dense = iou_engines.dense_reductions(priors, gts, valid, excluded, 0.,
                                         assign_all)
    windowed = iou_engines.windowed_reductions(priors, gts, valid, excluded,
                                               layout, 0., assign_all)
    assert isinstance(windowed, iou_engines.IoUReductions)
    for name in iou_engines.IoUReductions._fields:
        a, b = getattr(dense, name), getattr(windowed, name)
        if a is None:
            assert b is None, name
        else:
            assert torch.equal(a, b), name


def test_window_bound_is_the_assigner_one():
    """The anchor analysis counts with the bound the assigner's windowed
    engine uses (imported, not copied)."""
    from mmretina.analysis import anchor_matching
    assert anchor_matching.shape_windows is iou_engines.shape_windows


def test_shape_windows_hold_every_anchor_reaching_the_floor():
    priors, gts, valid, layout = _problem(2)
    boxes = gts[valid]
    ious = pairwise_iou(boxes, priors)
    for floor in (0., 0.4, 0.5):
        inside = torch.zeros_like(ious, dtype=torch.bool)
        windows = [iou_engines.shape_windows(boxes.double(), level, floor)
                   for level in layout]
        gt, anchor = iou_engines.window_pairs(windows, layout,
                                               torch.arange(len(boxes)))
        inside[gt, anchor] = True
        reach = ious >= floor if floor > 0 else ious > 0
        assert inside[reach].all(), floor
