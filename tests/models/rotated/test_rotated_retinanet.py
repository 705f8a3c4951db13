"""mmretina's modules inside mmrotate's rotated RetinaNet (issue 29): the
``rotated-retinanet-rbox-le90`` and ``-oc`` configs of mmrotate-dev 1.0.1
with ``RetinaHead``, ``FocalLoss``, ``MaxIoUAssigner`` and
``FakeRotatedAnchorGenerator`` swapped for ``mmretina.*`` build from
mmrotate's scope, load the mmrotate model's state dict with ``strict=True``
and give its anchors, assignments, losses, gradients and detections.

mmrotate's model is the reference, as mmdet's is for the axis-aligned head.
Scores are made distinct (random classifier weights) so that detections
compare in order; where two detections tie exactly in score, mmcv's rotated
NMS may list them in either order, and the comparison sorts ties only.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmretina.testing import detection_rows
from mmretina.utils.mmrotate import require_mmrotate

try:
    mmrotate = require_mmrotate()
except ImportError as e:  # the rotated extra is part of tools/install.sh
    pytest.skip(str(e), allow_module_level=True)

from mmrotate.registry import MODELS, TASK_UTILS  # noqa: E402
from mmrotate.structures.bbox import RotatedBoxes  # noqa: E402

CONFIGS = osp.join(osp.dirname(mmrotate.__file__), '.mim', 'configs',
                   'rotated_retinanet')
LE90 = 'rotated-retinanet-rbox-le90_r50_fpn_1x_dota.py'
OC = 'rotated-retinanet-rbox-oc_r50_fpn_1x_dota.py'
STRIDES = (8, 16, 32, 64, 128)


def model_cfg(name, swap, small=False):
    """mmrotate's own config; ``swap`` puts mmretina's four types in."""
    cfg = Config.fromfile(osp.join(CONFIGS, name)).model
    cfg.backbone.init_cfg = None  # no download
    # fewer NMS candidates (mmrotate's rotated NMS compares every pair: 20 s
    # for its 2000 per level); the rules are the config's
    cfg.test_cfg.nms_pre = 300
    if small:  # the same head on a lighter backbone (full-model tests)
        cfg.backbone.update(depth=18, frozen_stages=-1)
        cfg.neck.in_channels = [64, 128, 256, 512]
    if swap:
        head = cfg.bbox_head
        head.type = 'mmretina.RetinaHead'
        head.loss_cls.type = 'mmretina.FocalLoss'
        head.anchor_generator.type = 'mmretina.FakeRotatedAnchorGenerator'
        cfg.train_cfg.assigner.type = 'mmretina.MaxIoUAssigner'
    return cfg


@pytest.fixture(autouse=True)
def mmrotate_scope():
    """mmrotate's scope for each test, the previous one restored after (a
    default scope left behind changes what later tests build)."""
    with DefaultScope.overwrite_default_scope('mmrotate'):
        yield


def build_pair(name, small=False, seed=0):
    torch.manual_seed(seed)
    theirs = MODELS.build(model_cfg(name, False, small))
    theirs.init_weights()
    # distinct scores, boxes that move: detections to compare
    head = theirs.bbox_head
    head.retina_cls.weight.data.normal_(0, 0.2)
    head.retina_cls.bias.data.fill_(-1.)
    head.retina_reg.weight.data.mul_(30)
    ours = MODELS.build(model_cfg(name, True, small))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours.eval(), theirs.eval()


def rotated_scene(num, size, gen, num_classes=15):
    """Dense synthetic objects: ships / vehicles at any angle, many
    touching or overlapping."""
    ctr = torch.rand(num, 2, generator=gen) * size
    wh = 6 + torch.rand(num, 2, generator=gen) * torch.tensor([90., 30.])
    angle = (torch.rand(num, 1, generator=gen) - 0.5) * np.pi
    boxes = torch.cat([ctr, wh, angle], 1)
    return InstanceData(
        bboxes=RotatedBoxes(boxes),
        labels=torch.randint(0, num_classes, (num, ), generator=gen))


def head_inputs(size, num_imgs, gen):
    return [torch.randn(num_imgs, 256, -(-size // s), -(-size // s),
                        generator=gen) for s in STRIDES]


def metas_of(size, num_imgs, scale=1.):
    return [dict(img_shape=(size, size), pad_shape=(size, size),
                 batch_input_shape=(size, size), scale_factor=(scale, scale))
            for _ in range(num_imgs)]


def loss_and_grads(head, feats, gts, metas):
    outs = head([f.clone() for f in feats])
    leaves = [[o.detach().requires_grad_() for o in lvl] for lvl in outs]
    losses = head.loss_by_feat(*leaves, copy.deepcopy(gts), metas)
    total = {k: sum(v) if isinstance(v, list) else v
             for k, v in losses.items() if k.startswith('loss')}
    sum(total.values()).backward()
    return ({k: v.item() for k, v in total.items()},
            [o.grad for lvl in leaves for o in lvl])


@pytest.mark.parametrize('angle_version', ['le90', 'oc', 'le135', None])
def test_anchors_equal_mmrotate(angle_version):
    cfg = dict(angle_version=angle_version, octave_base_scale=4,
               scales_per_octave=3, ratios=[1.0, 0.5, 2.0], strides=STRIDES)
    theirs = TASK_UTILS.build(dict(type='FakeRotatedAnchorGenerator', **cfg))
    ours = TASK_UTILS.build(
        dict(type='mmretina.FakeRotatedAnchorGenerator', **cfg))
    sizes = [(40, 24), (20, 12), (10, 6), (5, 3), (3, 2)]
    for a, b in zip(theirs.grid_priors(sizes, device='cpu'),
                    ours.grid_priors(sizes, device='cpu')):
        assert type(b).__name__ == 'RotatedBoxes'
        assert torch.equal(a.tensor, b.tensor)


def test_bad_angle_version():
    with pytest.raises(ValueError, match='angle_version must be one of'):
        TASK_UTILS.build(dict(type='mmretina.FakeRotatedAnchorGenerator',
                              angle_version='le45', strides=[8],
                              ratios=[1.], scales=[1.]))


@pytest.mark.parametrize('iou_type',
                         ['RBboxOverlaps2D', 'mmretina.RBboxOverlaps2D'])
def test_assignment_equals_mmdet_rotated(iou_type):
    """Windowed (what the head uses), dense and mmdet's per-image
    assignment with mmrotate's RBboxOverlaps2D give the same gt_inds and
    max overlaps on a dense scene."""
    from mmdet.models.task_modules.assigners import \
        MaxIoUAssigner as MMDetAssigner
    gen = torch.Generator().manual_seed(3)
    size = 256
    gen_cfg = dict(type='mmretina.FakeRotatedAnchorGenerator',
                   angle_version='le90', octave_base_scale=4,
                   scales_per_octave=3, ratios=[1.0, 0.5, 2.0],
                   strides=STRIDES)
    anchors = TASK_UTILS.build(gen_cfg)
    sizes = [(size // s, size // s) for s in STRIDES]
    priors = torch.cat([p.tensor for p in anchors.grid_priors(
        sizes, device='cpu')])
    layout = anchors.grid_layout(sizes)
    args = dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                ignore_iof_thr=-1)
    ours = TASK_UTILS.build(dict(type='mmretina.MaxIoUAssigner',
                                 iou_calculator=dict(type=iou_type), **args))
    theirs = MMDetAssigner(iou_calculator=dict(type='RBboxOverlaps2D'),
                           **args)
    assert ours.rotated
    gt = rotated_scene(60, size, gen)
    ref = theirs.assign(InstanceData(priors=RotatedBoxes(priors)), gt)
    boxes = gt.bboxes.tensor[None]
    valid = torch.ones(1, 60, dtype=torch.bool)
    for lay in (layout, None):
        gt_inds, max_ov = ours.assign_batch(priors, boxes, valid, None, lay)
        assert torch.equal(gt_inds[0], ref.gt_inds)
        assert torch.equal(max_ov[0], ref.max_overlaps)
    # the head's cheaper call: labels only
    gt_inds, _ = ours.assign_batch(priors, boxes, valid, None, layout,
                                   exact_overlaps=False)
    assert torch.equal(gt_inds[0], ref.gt_inds)


@pytest.mark.parametrize('name', [LE90, OC])
def test_losses_grads_detections_equal_mmrotate(name):
    """Head level, dense synthetic scenes: two 384 px images, 30 and 18
    rotated objects."""
    ours, theirs = build_pair(name)
    gen = torch.Generator().manual_seed(1)
    size = 384
    feats = head_inputs(size, 2, gen)
    gts = [rotated_scene(30, size, gen), rotated_scene(18, size, gen)]
    metas = metas_of(size, 2, scale=2.)
    ref_losses, ref_grads = loss_and_grads(theirs.bbox_head, feats, gts,
                                           metas)
    our_losses, our_grads = loss_and_grads(ours.bbox_head, feats, gts, metas)
    for key in ('loss_cls', 'loss_bbox'):
        assert our_losses[key] == pytest.approx(ref_losses[key], rel=1e-6)
    for a, b in zip(ref_grads, our_grads):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-9)
    with torch.no_grad():
        outs = theirs.bbox_head(feats)
        ref = theirs.bbox_head.predict_by_feat(*outs, batch_img_metas=metas,
                                               rescale=True)
        got = ours.bbox_head.predict_by_feat(*outs, batch_img_metas=metas,
                                             rescale=True)
    for a, b in zip(ref, got):
        assert type(b.bboxes).__name__ == 'RotatedBoxes'
        assert len(a) == len(b) > 100
        assert torch.equal(detection_rows(a), detection_rows(b))


def test_full_model_on_aerial_patch(df_images):
    """The whole detector (backbone, neck, head; mmrotate's data
    preprocessor) on a real aerial patch (DeepForest's OSBS_029, 400 px)
    with rotated objects: the losses, every parameter's gradient and the
    detections are mmrotate's."""
    import mmcv
    from mmdet.structures import DetDataSample
    ours, theirs = build_pair(LE90, small=True, seed=2)
    img = torch.from_numpy(mmcv.imread(df_images['OSBS_029.png'])).permute(
        2, 0, 1).contiguous()
    gen = torch.Generator().manual_seed(5)
    sample = DetDataSample(metainfo=dict(
        img_shape=tuple(img.shape[1:]), ori_shape=tuple(img.shape[1:]),
        scale_factor=(1., 1.)))
    sample.gt_instances = rotated_scene(30, img.shape[1], gen)
    data = dict(inputs=[img], data_samples=[sample])
    results = []
    for model in (theirs, ours):
        model.train()
        model.zero_grad()
        batch = model.data_preprocessor(copy.deepcopy(data), True)
        losses = model.loss(batch["inputs"], batch["data_samples"])
        total = {k: sum(v) if isinstance(v, list) else v
                 for k, v in losses.items() if k.startswith('loss')}
        sum(total.values()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()
                 if p.grad is not None}
        model.eval()
        with torch.no_grad():
            pred = model.test_step(copy.deepcopy(data))[0].pred_instances
        results.append((total, grads, pred))
    (ref_l, ref_g, ref_p), (our_l, our_g, our_p) = results
    for key in ref_l:
        assert our_l[key].item() == pytest.approx(ref_l[key].item(),
                                                  rel=1e-6)
    assert ref_g.keys() == our_g.keys()
    for name in ref_g:
        torch.testing.assert_close(our_g[name], ref_g[name], rtol=1e-4,
                                   atol=1e-7, msg=name)
    assert len(ref_p) == len(our_p) > 0
    assert torch.equal(detection_rows(ref_p), detection_rows(our_p))


def test_prefixed_types_resolve_from_mmrotate_scope():
    """mmengine resolves ``mmretina.X`` from mmrotate's scope (a sibling of
    mmdet's) as from mmdet's."""
    from mmdet.registry import MODELS as MMDET_MODELS
    for registry in (MODELS, MMDET_MODELS):
        assert registry.get('mmretina.RetinaHead').__module__.startswith(
            'mmretina.')
    assert TASK_UTILS.get('mmretina.MaxIoUAssigner') is not None
