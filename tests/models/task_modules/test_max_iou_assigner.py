"""MaxIoUAssigner: mmdet's assignments, ties included, plus the #8289 fix."""
import pytest
import torch
from mmdet.models.task_modules.assigners import \
    MaxIoUAssigner as MMDetMaxIoUAssigner
from mmengine.structures import InstanceData

from mmretina.models.task_modules import MaxIoUAssigner
from mmretina.models.task_modules.assigners import (iou_engines,
                                                    max_iou_assigner)

RETINA = dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
              ignore_iof_thr=-1)


def random_boxes(n, size, gen, min_wh=2, max_wh=60):
    xy = torch.rand(n, 2, generator=gen) * size
    wh = min_wh + torch.rand(n, 2, generator=gen) * (max_wh - min_wh)
    return torch.cat([xy, xy + wh], 1)


def grid_priors(step=8, size=128, wh=(16, 32)):
    boxes = []
    for y in range(0, size, step):
        for x in range(0, size, step):
            for s in wh:
                boxes.append([x, y, x + s, y + s])
    return torch.tensor(boxes, dtype=torch.float32)


def assert_same(cfg, priors, gt_bboxes, gt_labels, ignore=None):
    pred = InstanceData(priors=priors)
    gt = InstanceData(bboxes=gt_bboxes, labels=gt_labels)
    ign = None if ignore is None else InstanceData(bboxes=ignore)
    ours = MaxIoUAssigner(**cfg).assign(pred, gt, ign)
    ref = MMDetMaxIoUAssigner(**cfg).assign(pred, gt, ign)
    assert ours.num_gts == ref.num_gts
    assert torch.equal(ours.gt_inds, ref.gt_inds)
    assert torch.equal(ours.max_overlaps, ref.max_overlaps)
    assert torch.equal(ours.labels, ref.labels)
    return ours


CONFIGS = {
    'retina': RETINA,
    'tuple_neg': dict(pos_iou_thr=0.6, neg_iou_thr=(0.1, 0.4),
                      min_pos_iou=0.1),
    'first_only': dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.1,
                       gt_max_assign_all=False),
    'no_low_quality': dict(pos_iou_thr=0.5, neg_iou_thr=0.4,
                           match_low_quality=False),
    'ignore': dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.05,
                   ignore_iof_thr=0.5),
    'ignore_wrt_gt': dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.05,
                          ignore_iof_thr=0.3, ignore_wrt_candidates=False),
}


@pytest.mark.parametrize('name', list(CONFIGS))
@pytest.mark.parametrize('seed', range(3))
def test_random_cases_match_mmdet(name, seed):
    gen = torch.Generator().manual_seed(seed)
    priors = random_boxes(500, 200, gen)
    gts = random_boxes(12, 200, gen, 10, 80)
    labels = torch.randint(0, 5, (12, ), generator=gen)
    ignore = random_boxes(3, 200, gen, 20, 60)
    assert_same(CONFIGS[name], priors, gts, labels, ignore)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_tie_heavy_grid_matches_mmdet(name):
    """Grid anchors and grid-aligned gts: many equal IoUs, duplicate gts."""
    priors = grid_priors()
    gts = torch.tensor([[0, 0, 16, 16], [0, 0, 16, 16], [8, 8, 40, 40],
                        [4, 4, 20, 20], [64, 64, 96, 96], [60, 60, 100, 100],
                        [16, 0, 32, 16]], dtype=torch.float32)
    labels = torch.arange(len(gts))
    ignore = torch.tensor([[60, 60, 110, 110]], dtype=torch.float32)
    result = assert_same(CONFIGS[name], priors, gts, labels, ignore)
    assert (result.gt_inds > 0).any()


def test_argmax_tie_takes_lowest_gt_and_low_quality_takes_last_gt():
    priors = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float)
    gts = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=torch.float)
    pred = InstanceData(priors=priors)
    gt = InstanceData(bboxes=gts, labels=torch.tensor([3, 7]))
    no_lq = MaxIoUAssigner(0.5, 0.4, match_low_quality=False).assign(pred, gt)
    assert no_lq.gt_inds.tolist() == [1, 0]  # argmax tie: first gt
    lq = MaxIoUAssigner(0.5, 0.4, min_pos_iou=0.1).assign(pred, gt)
    assert lq.gt_inds.tolist() == [2, 0]  # low-quality loop: last gt wins
    assert lq.labels.tolist() == [7, -1]


def test_empty_gt_and_empty_priors_match_mmdet():
    gen = torch.Generator().manual_seed(0)
    priors = random_boxes(20, 100, gen)
    ours = assert_same(RETINA, priors, torch.zeros(0, 4),
                       torch.zeros(0, dtype=torch.long))
    assert (ours.gt_inds == 0).all()
    ours = assert_same(RETINA, torch.zeros(0, 4), random_boxes(3, 100, gen),
                       torch.tensor([0, 1, 2]))
    assert ours.gt_inds.numel() == 0
    # Ignore boxes do not matter when there is no ground truth (mmdet).
    assert_same(CONFIGS['ignore'], priors, torch.zeros(0, 4),
                torch.zeros(0, dtype=torch.long), random_boxes(2, 100, gen))


def test_zero_iou_gt_gets_no_low_quality_match():
    """The deliberate difference: mmdet (#8289) makes every anchor with IoU
    0 to an unreachable gt its positive; we match nothing to it."""
    priors = torch.tensor([[0, 0, 10, 10], [10, 10, 20, 20], [50, 50, 60, 60]],
                          dtype=torch.float)
    gts = torch.tensor([[0, 0, 10, 10], [200, 200, 210, 210]],
                       dtype=torch.float)
    pred = InstanceData(priors=priors)
    gt = InstanceData(bboxes=gts, labels=torch.tensor([0, 1]))
    ref = MMDetMaxIoUAssigner(**RETINA).assign(pred, gt)
    ours = MaxIoUAssigner(**RETINA).assign(pred, gt)
    # mmdet's bug: every anchor has IoU 0 with gt 2, so all become its
    # positives, even the perfect match of gt 1.
    assert ref.gt_inds.tolist() == [2, 2, 2]
    assert ours.gt_inds.tolist() == [1, 0, 0]
    # A degenerate (zero-area) gt is the same case.
    gt = InstanceData(bboxes=torch.tensor([[5., 5., 5., 9.]]),
                      labels=torch.tensor([0]))
    assert MaxIoUAssigner(**RETINA).assign(pred, gt).gt_inds.tolist() == [
        0, 0, 0
    ]


def test_chunked_assignment_equals_unchunked(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    priors = random_boxes(3000, 300, gen)
    gts = random_boxes(40, 300, gen, 10, 80)
    labels = torch.randint(0, 3, (40, ), generator=gen)
    pred = InstanceData(priors=priors)
    gt = InstanceData(bboxes=gts, labels=labels)
    for cfg in (RETINA, CONFIGS['first_only']):
        full = MaxIoUAssigner(**cfg).assign(pred, gt)
        monkeypatch.setattr(iou_engines, '_MAX_IOU_ELEMENTS', 1000)
        chunked = MaxIoUAssigner(**cfg).assign(pred, gt)
        monkeypatch.undo()
        assert torch.equal(full.gt_inds, chunked.gt_inds)
        assert torch.equal(full.max_overlaps, chunked.max_overlaps)


def test_gpu_assign_thr_cpu_fallback_gives_same_result():
    gen = torch.Generator().manual_seed(4)
    priors = random_boxes(300, 200, gen)
    gts = random_boxes(30, 200, gen, 10, 80)
    labels = torch.randint(0, 3, (30, ), generator=gen)
    cfg = dict(RETINA, gpu_assign_thr=10)
    result = assert_same(cfg, priors, gts, labels)
    assert result.gt_inds.device == priors.device


@pytest.mark.parametrize('name', list(CONFIGS))
@pytest.mark.parametrize('counts', [(0, 3, 17), (5, 0, 3), (0, 0, 9)])
def test_batch_assignment_equals_mmdet_per_image(name, counts):
    """The batched path the head uses (ignored priors excluded, padded
    ground truths, empty images mixed in) gives, image by image, mmdet's
    assignment, for every assigner config of this module."""
    cfg = CONFIGS[name]
    gen = torch.Generator().manual_seed(5 + sum(counts))
    priors = random_boxes(800, 256, gen)
    gts = [random_boxes(n, 256, gen, 10, 90) for n in counts]
    ignores = [random_boxes(2, 256, gen, 20, 60) for _ in counts]
    assigner = MaxIoUAssigner(**cfg)
    padded, valid = max_iou_assigner.pad_boxes(gts)
    assert padded.shape == (3, -(-max(counts) // 8) * 8, 4)  # bucket of 8
    ignore, ignore_valid = max_iou_assigner.pad_boxes(ignores)
    excluded = assigner.ignored_priors(priors[None], ignore, ignore_valid)
    gt_inds, max_overlaps = assigner.assign_batch(priors, padded, valid,
                                                  excluded)
    for i, boxes in enumerate(gts):
        ref = MMDetMaxIoUAssigner(**cfg).assign(
            InstanceData(priors=priors),
            InstanceData(bboxes=boxes, labels=torch.zeros(len(boxes)).long()),
            InstanceData(bboxes=ignores[i]))
        assert torch.equal(gt_inds[i], ref.gt_inds), (name, i)
        assert torch.equal(max_overlaps[i], ref.max_overlaps), (name, i)
    assert (gt_inds[torch.tensor(counts) == 0] == 0).all()


@pytest.mark.parametrize('name', ['retina', 'tuple_neg', 'ignore'])
def test_mmdet_box_types_are_accepted(name):
    """HorizontalBoxes (mmdet pipelines with boxtype2tensor=False, user
    code) for priors, ground truths and ignore boxes."""
    from mmdet.structures.bbox import HorizontalBoxes
    gen = torch.Generator().manual_seed(8)
    priors = random_boxes(300, 200, gen)
    gts = random_boxes(6, 200, gen, 10, 80)
    labels = torch.randint(0, 3, (6, ), generator=gen)
    ignore = random_boxes(2, 200, gen, 20, 60)
    plain = assert_same(CONFIGS[name], priors, gts, labels, ignore)
    boxed = MaxIoUAssigner(**CONFIGS[name]).assign(
        InstanceData(priors=HorizontalBoxes(priors)),
        InstanceData(bboxes=HorizontalBoxes(gts), labels=labels),
        InstanceData(bboxes=HorizontalBoxes(ignore)))
    ref = MMDetMaxIoUAssigner(**CONFIGS[name]).assign(
        InstanceData(priors=HorizontalBoxes(priors)),
        InstanceData(bboxes=HorizontalBoxes(gts), labels=labels),
        InstanceData(bboxes=HorizontalBoxes(ignore)))
    for result in (boxed, ref):
        assert torch.equal(result.gt_inds, plain.gt_inds)
        assert torch.equal(result.max_overlaps, plain.max_overlaps)
        assert torch.equal(result.labels, plain.labels)


def test_batch_without_any_ground_truth_is_all_background():
    priors = grid_priors()
    padded, valid = max_iou_assigner.pad_boxes(
        [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert valid.shape == (2, 0)
    gt_inds, max_overlaps = MaxIoUAssigner(**RETINA).assign_batch(
        priors, padded, valid)
    assert gt_inds.shape == (2, len(priors)) and (gt_inds == 0).all()
    assert (max_overlaps == 0).all()


# --- windowed assignment: bit-identical to the dense path -----------------

RETINA_ANCHORS = dict(octave_base_scale=4, scales_per_octave=3,
                      ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128])


def _grid(sizes, **gen_cfg):
    from mmretina.models.task_modules import AnchorGenerator
    gen = AnchorGenerator(**(gen_cfg or RETINA_ANCHORS))
    priors = torch.cat(gen.grid_priors(sizes, device='cpu'))
    return priors, gen.grid_layout(sizes)


def _assert_windowed_equals_dense(cfg, priors, layout, gts, excluded=None,
                                  ignores=None):
    assigner = MaxIoUAssigner(**cfg)
    padded, valid = max_iou_assigner.pad_boxes(gts)
    if ignores is not None:
        ignore, ignore_valid = max_iou_assigner.pad_boxes(ignores)
        ignored = assigner.ignored_priors(priors[None], ignore, ignore_valid)
        if ignored is not None:
            excluded = ignored if excluded is None else excluded | ignored
    used = excluded if excluded is None else \
        excluded & valid.any(dim=1, keepdim=True)
    assert iou_engines.windowed_reductions(
        priors, padded, valid, used, layout, assigner.min_pos_iou,
        True) is not None, 'the windowed path did not run'
    dense = assigner.assign_batch(priors, padded, valid, excluded)
    windowed = assigner.assign_batch(priors, padded, valid, excluded, layout)
    assert torch.equal(dense[0], windowed[0])
    assert torch.equal(dense[1], windowed[1])  # max_overlaps, bit for bit
    # what the head runs: only pairs reaching the lowest label threshold
    floored = assigner.assign_batch(priors, padded, valid, excluded, layout,
                                    exact_overlaps=False)
    assert torch.equal(dense[0], floored[0])
    reached = dense[1] >= assigner.label_iou_floor
    assert torch.equal(dense[1][reached], floored[1][reached])
    return windowed


def _sizes(h, w):
    return [(-(-h // s), -(-w // s)) for s in (8, 16, 32, 64, 128)]


@pytest.mark.parametrize('name', list(CONFIGS))
@pytest.mark.parametrize('seed', range(2))
def test_windowed_equals_dense_random_batches(name, seed):
    gen = torch.Generator().manual_seed(100 + seed)
    priors, layout = _grid(_sizes(320, 416))
    counts = [7, 0, 25]
    gts = [random_boxes(n, 400, gen, 4, 200) for n in counts]
    ignores = [random_boxes(2, 400, gen, 20, 80) for _ in counts]
    # images of different sizes in one padded batch: anchors off an image
    # are excluded, as the head does
    img_w = torch.tensor([416, 300, 350])[:, None]
    excluded = priors[None, :, 2] > img_w + 50
    gt_inds, _ = _assert_windowed_equals_dense(CONFIGS[name], priors, layout,
                                               gts, excluded, ignores)
    assert (gt_inds[0] > 0).any() and (gt_inds[1] == 0).all()


@pytest.mark.parametrize('name', ['retina', 'first_only', 'tuple_neg'])
def test_windowed_equals_dense_tie_heavy_grid(name):
    """Ground truths equal to anchors, duplicated, and on cell borders:
    many equal IoUs for one anchor and one ground truth."""
    priors, layout = _grid([(16, 16), (8, 8)], octave_base_scale=2,
                           scales_per_octave=1, ratios=[1.0], strides=[8, 16])
    boxes = torch.tensor([[0, 0, 16, 16], [0, 0, 16, 16], [8, 8, 24, 24],
                          [-4, -4, 12, 12], [16, 16, 48, 48],
                          [16, 16, 48, 48], [40, 8, 56, 24], [0, 0, 32, 32]],
                         dtype=torch.float32)
    gts = [boxes, boxes.flip(0), boxes[:3] + 64]
    gt_inds, _ = _assert_windowed_equals_dense(CONFIGS[name], priors, layout,
                                               gts)
    assert (gt_inds > 0).sum() > 10


@pytest.mark.parametrize('name', ['retina', 'first_only'])
def test_windowed_equals_dense_crowded(name):
    """1200 overlapping boxes in one image (a dense aerial tile)."""
    gen = torch.Generator().manual_seed(7)
    priors, layout = _grid(
        _sizes(384, 384)[:3], octave_base_scale=4, scales_per_octave=3,
        ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32])
    gts = [random_boxes(1200, 360, gen, 6, 40), random_boxes(300, 360, gen)]
    gt_inds, _ = _assert_windowed_equals_dense(CONFIGS[name], priors, layout,
                                               gts)
    assert len(gt_inds[0][gt_inds[0] > 0].unique()) > 900


def test_windowed_equals_dense_tiny_huge_and_outside_boxes():
    gen = torch.Generator().manual_seed(9)
    priors, layout = _grid(_sizes(256, 384))
    boxes = torch.cat([
        random_boxes(20, 380, gen, 0.5, 3),  # tiny: few or no overlaps
        torch.tensor([[0., 0., 384., 256.], [-500., -500., 900., 900.],
                      [-30., 40., 20., 90.], [370., 250., 420., 300.],
                      [1000., 1000., 1010., 1010.],  # outside every anchor
                      [50., 50., 50., 80.]])  # degenerate (zero width)
    ])
    for cfg in (RETINA, CONFIGS['first_only'], CONFIGS['tuple_neg']):
        _assert_windowed_equals_dense(cfg, priors, layout,
                                      [boxes, boxes[:5]])


def test_windowed_path_falls_back_when_windows_are_not_cheaper():
    priors, layout = _grid(_sizes(64, 64))
    huge = torch.tensor([[-100., -100., 200., 200.]] * 4)
    padded, valid = max_iou_assigner.pad_boxes([huge])
    assert iou_engines.windowed_reductions(
        priors, padded, valid, None, layout, 0., True) is None
    # and a layout that does not describe the priors is not used
    assert iou_engines.windowed_reductions(
        priors[:-9], padded, valid, None, layout, 0., True) is None


def test_head_uses_the_windowed_path_and_says_so_in_debug_logs():
    import logging

    from mmengine.logging import MMLogger
    gen = torch.Generator().manual_seed(3)
    priors, layout = _grid(_sizes(320, 320))
    padded, valid = max_iou_assigner.pad_boxes(
        [random_boxes(10, 300, gen, 10, 60)])
    logger = MMLogger.get_instance('mmretina_window_test',
                                   log_level='DEBUG')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        MaxIoUAssigner(**RETINA).assign_batch(priors, padded, valid,
                                              layout=layout)
        MaxIoUAssigner(**RETINA).assign_batch(priors, padded, valid)
    finally:
        logger.removeHandler(handler)
    paths = [r.getMessage().split()[1] for r in records
             if r.getMessage().startswith('MaxIoUAssigner:')]
    assert paths == ['windowed', 'dense']


def test_label_iou_floor():
    assert MaxIoUAssigner(**RETINA).label_iou_floor == 0.4
    assert MaxIoUAssigner(**CONFIGS['tuple_neg']).label_iou_floor == 0.1
    assert MaxIoUAssigner(0.5, (0., 0.4)).label_iou_floor == 0.4
    assert MaxIoUAssigner(0.7, 0.3).label_iou_floor == 0.3
    assert MaxIoUAssigner(0., 0.4).label_iou_floor == 0.


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('name', ['retina', 'tuple_neg', 'first_only'])
def test_windowed_equals_dense_on_cuda(name):
    """The same code path on a GPU (device-agnostic tensors only)."""
    gen = torch.Generator().manual_seed(21)
    priors, layout = _grid(_sizes(320, 416))
    gts = [random_boxes(n, 400, gen, 4, 200).cuda() for n in (40, 0, 9)]
    gt_inds, _ = _assert_windowed_equals_dense(CONFIGS[name], priors.cuda(),
                                               layout, gts)
    assert gt_inds.is_cuda and (gt_inds[0] > 0).any()
