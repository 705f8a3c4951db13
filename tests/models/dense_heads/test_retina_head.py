"""RetinaHead parity with mmdet's RetinaHead, and its own guarantees."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.structures import InstanceData

from mmretina.testing import retina_head_cfg

NUM_CLASSES = 4


def head_cfg(prefix='mmretina.', **overrides):
    return retina_head_cfg(
        prefix, **dict(dict(num_classes=NUM_CLASSES, in_channels=8,
                            stacked_convs=2, feat_channels=8), **overrides))


def build_pair(**overrides):
    ours = MODELS.build(head_cfg('mmretina.', **copy.deepcopy(overrides)))
    theirs = MODELS.build(head_cfg('', **copy.deepcopy(overrides)))
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def random_gt(num, img_h, img_w, gen):
    xy = torch.rand(num, 2, generator=gen) * torch.tensor([img_w, img_h])
    wh = 8 + torch.rand(num, 2, generator=gen) * 120
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, img_w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, img_h)
    labels = torch.randint(0, NUM_CLASSES, (num, ), generator=gen)
    return InstanceData(bboxes=boxes, labels=labels)


def make_batch(img_shapes, num_gts, seed=0):
    """Head outputs for a padded batch plus gts and metas."""
    gen = torch.Generator().manual_seed(seed)
    pad_h = max(s[0] for s in img_shapes)
    pad_w = max(s[1] for s in img_shapes)
    pad_h, pad_w = -(-pad_h // 32) * 32, -(-pad_w // 32) * 32
    metas = [
        dict(
            img_shape=s,
            pad_shape=(pad_h, pad_w),
            batch_input_shape=(pad_h, pad_w),
            scale_factor=(1.5, 1.25)) for s in img_shapes
    ]
    gts = [random_gt(n, s[0], s[1], gen) for s, n in zip(img_shapes, num_gts)]
    return metas, gts, (pad_h, pad_w), gen


def head_outputs(head, pad_hw, num_imgs, gen, scale=1.0):
    feats = []
    for stride in (8, 16, 32, 64, 128):
        h, w = -(-pad_hw[0] // stride), -(-pad_hw[1] // stride)
        feats.append(torch.randn(num_imgs, 8, h, w, generator=gen) * scale)
    return feats


CASES = {
    'sizes_differ': ([(200, 300), (256, 180)], [3, 5]),
    'empty_gt': ([(160, 224), (160, 224)], [0, 4]),
    'crowded': ([(256, 256), (192, 256)], [45, 7]),
}


# The heads' weights come from the global RNG: seeded here, so that a test's
# inputs do not depend on the tests run before it (seed 12 gave a gradient
# element of 3.6e-3 beside a tensor maximum of 3.7, see below)
@pytest.mark.parametrize('seed', [0, 12])
@pytest.mark.parametrize('case', list(CASES))
def test_loss_and_grad_match_mmdet(case, seed):
    shapes, num_gts = CASES[case]
    torch.manual_seed(seed)
    ours, theirs = build_pair()
    metas, gts, pad_hw, gen = make_batch(shapes, num_gts)
    feats = head_outputs(ours, pad_hw, len(shapes), gen)
    losses = []
    grads = []
    for head in (ours, theirs):
        head.zero_grad()
        x = [f.clone().requires_grad_(True) for f in feats]
        cls_scores, bbox_preds = head(x)
        loss = head.loss_by_feat(cls_scores, bbox_preds, gts, metas)
        loss_cls = sum(loss['loss_cls']) if isinstance(
            loss['loss_cls'], list) else loss['loss_cls']
        loss_bbox = sum(loss['loss_bbox']) if isinstance(
            loss['loss_bbox'], list) else loss['loss_bbox']
        (loss_cls + loss_bbox).backward()
        losses.append((loss_cls.detach(), loss_bbox.detach()))
        grads.append({n: p.grad.clone() for n, p in head.named_parameters()})
    (oc, ob), (tc, tb) = losses
    assert float(tc) > 0
    torch.testing.assert_close(oc, tc, rtol=1e-5, atol=0)
    torch.testing.assert_close(ob, tb, rtol=1e-5, atol=1e-7)
    for name, theirs_grad in grads[1].items():
        # float32 sums in another order: an element differs by a few ulps of
        # the tensor's largest (4.8e-7 of 3.7 once), not of its own value
        torch.testing.assert_close(
            grads[0][name], theirs_grad, rtol=1e-4,
            atol=1e-6 * float(theirs_grad.abs().max()), msg=name)


def random_outputs(pad_hw, num_imgs, gen, num_anchors=9):
    """Logits ~ N(-4, 2): about a third of the scores pass 0.05, none
    saturate (ties at 1.0 would make the nms_pre cut ill-defined)."""
    cls_scores, bbox_preds = [], []
    for stride in (8, 16, 32, 64, 128):
        h, w = -(-pad_hw[0] // stride), -(-pad_hw[1] // stride)
        cls_scores.append(-4 + 2 * torch.randn(
            num_imgs, num_anchors * NUM_CLASSES, h, w, generator=gen))
        bbox_preds.append(0.5 * torch.randn(
            num_imgs, num_anchors * 4, h, w, generator=gen))
    return cls_scores, bbox_preds


@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('rescale', [True, False])
def test_predictions_match_mmdet(case, rescale):
    shapes, num_gts = CASES[case]
    ours, theirs = build_pair()
    metas, _, pad_hw, gen = make_batch(shapes, num_gts, seed=1)
    outs = random_outputs(pad_hw, len(shapes), gen)
    mine = ours.predict_by_feat(*outs, batch_img_metas=metas, rescale=rescale)
    ref = theirs.predict_by_feat(*outs, batch_img_metas=metas,
                                 rescale=rescale)
    for a, b in zip(mine, ref):
        assert len(b) == 100
        assert len(a) == len(b)
        torch.testing.assert_close(a.scores, b.scores)
        torch.testing.assert_close(a.bboxes, b.bboxes)
        assert torch.equal(a.labels, b.labels)


def losses_of(head, outs, gts, metas, ignore=None):
    head.zero_grad()
    loss = head.loss_by_feat(*outs, gts, metas, ignore)
    return {
        k: sum(v) if isinstance(v, list) else v
        for k, v in loss.items()
    }


@pytest.mark.parametrize('overrides', [
    dict(reg_decoded_bbox=True, loss_bbox=dict(type='GIoULoss',
                                               loss_weight=2.0)),
    dict(loss_bbox=dict(type='SmoothL1Loss', beta=0.11, loss_weight=1.0)),
    dict(loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=1.5,
                       alpha=0.3, loss_weight=2.0)),
])
def test_other_losses_match_mmdet(overrides):
    ours, theirs = build_pair(**overrides)
    metas, gts, pad_hw, gen = make_batch([(200, 260), (230, 200)], [6, 9])
    outs = random_outputs(pad_hw, 2, gen)
    a, b = losses_of(ours, outs, gts, metas), losses_of(theirs, outs, gts,
                                                        metas)
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7)


def test_ignore_boxes_and_allowed_border_match_mmdet():
    train_cfg = head_cfg().train_cfg
    ours_cfg = copy.deepcopy(train_cfg)
    ours_cfg.allowed_border = 0
    ours_cfg.assigner.ignore_iof_thr = 0.5
    theirs_cfg = copy.deepcopy(ours_cfg)
    theirs_cfg.assigner.type = 'MaxIoUAssigner'
    ours = MODELS.build(head_cfg(train_cfg=ours_cfg))
    theirs = MODELS.build(head_cfg('', train_cfg=theirs_cfg))
    metas, gts, pad_hw, gen = make_batch([(200, 260), (230, 200)], [6, 9])
    ignore = [InstanceData(bboxes=random_gt(3, 200, 200, gen).bboxes),
              InstanceData(bboxes=torch.zeros(0, 4))]
    outs = random_outputs(pad_hw, 2, gen)
    a = losses_of(ours, outs, gts, metas, ignore)
    b = losses_of(theirs, outs, gts, metas, ignore)
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7)


def test_any_mmdet_assigner_works_through_the_per_image_path():
    train_cfg = copy.deepcopy(head_cfg().train_cfg)
    train_cfg.assigner.type = 'MaxIoUAssigner'  # mmdet's, not ours
    generic = MODELS.build(head_cfg(train_cfg=train_cfg))
    fast, _ = build_pair()
    metas, gts, pad_hw, gen = make_batch([(200, 260), (230, 200)], [6, 9])
    outs = random_outputs(pad_hw, 2, gen)
    a, b = losses_of(fast, outs, gts, metas), losses_of(generic, outs, gts,
                                                        metas)
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=0)


def test_state_dict_keys_match_mmdet():
    ours, theirs = build_pair()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert 'cls_convs.0.conv.weight' in ours.state_dict()
    assert 'retina_reg.bias' in ours.state_dict()


def test_init_uses_the_prior_bias():
    """Sec. 4.1: b = -log((1 - pi) / pi) with pi = 0.01, weights N(0, 0.01)."""
    head = MODELS.build(head_cfg(feat_channels=64, in_channels=64))
    head.init_weights()
    expected = -torch.log(torch.tensor((1 - 0.01) / 0.01))
    torch.testing.assert_close(head.retina_cls.bias,
                               expected.expand_as(head.retina_cls.bias))
    assert abs(head.retina_cls.weight.std().item() - 0.01) < 0.002
    assert abs(head.cls_convs[0].conv.weight.std().item() - 0.01) < 0.002


def test_anchors_are_cached_per_size_device_and_dtype():
    head = MODELS.build(head_cfg())
    sizes = [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    first = head._priors(sizes, torch.float32, torch.device('cpu'))
    again = head._priors(sizes, torch.float32, torch.device('cpu'))
    assert first[1] is again[1]
    other = head._priors(sizes, torch.float64, torch.device('cpu'))
    assert other[1].dtype == torch.float64


def test_anchor_cache_is_bounded_in_bytes_least_recently_used_out():
    from mmretina.models.dense_heads.retina_head import PriorCache
    head = MODELS.build(head_cfg())

    def sizes(n):  # the same number of anchors for every n
        return [(n, 64 // n)] * 5

    cpu = torch.device('cpu')
    one = head._priors(sizes(8), torch.float32, cpu)
    entry = sum(t.numel() * 4 for t in [*one[0], one[1]])
    head._prior_cache = PriorCache(max_bytes=3 * entry)
    for n in (8, 8, 8):  # same size, same entry
        head._priors(sizes(n), torch.float32, cpu)
    kept = head._priors(sizes(8), torch.float32, cpu)
    for n in (4, 16):
        head._priors(sizes(n), torch.float32, cpu)
    head._priors(sizes(8), torch.float32, cpu)  # 8 is now the most recent
    head._priors(sizes(2), torch.float32, cpu)  # evicts 4, the oldest
    cache = head._prior_cache
    assert cache.nbytes == 3 * entry and len(cache) == 3
    assert head._priors(sizes(8), torch.float32, cpu)[1] is kept[1]
    assert {k[0][0][0] for k in cache._entries} == {8, 16, 2}
    # An entry larger than the budget is still returned and cached alone.
    head._prior_cache = PriorCache(max_bytes=1)
    big = head._priors([(20, 20)] * 5, torch.float32, cpu)
    assert len(head._prior_cache) == 1 and big[1].shape[0] == 5 * 400 * 9


def test_anchor_head_surface_matches_mmdet():
    ours, theirs = build_pair()
    assert ours.num_anchors == theirs.num_anchors == 9
    assert ours.anchor_generator is ours.prior_generator
    assert ours.num_base_priors == theirs.num_base_priors
    assert not hasattr(ours, 'relu')  # mmdet's is unused in its forward


def test_nan_ground_truth_is_named():
    head, _ = build_pair()
    metas, gts, pad_hw, gen = make_batch([(200, 260)], [3])
    metas[0]['img_path'] = 'data/broken.jpg'
    gts[0].bboxes[1, 2] = float('nan')
    outs = random_outputs(pad_hw, 1, gen)
    with pytest.raises(ValueError, match=r'broken\.jpg.*NaN or inf.*\[1\]'):
        head.loss_by_feat(*outs, gts, metas)


@pytest.mark.parametrize('which', [0, 1])
def test_non_finite_head_output_raises_instead_of_nan_loss(which):
    head, _ = build_pair()
    metas, gts, pad_hw, gen = make_batch([(200, 260)], [3])
    outs = random_outputs(pad_hw, 1, gen)
    outs[which][2][0, 0, 1, 1] = float('inf') if which else float('nan')
    name = 'box deltas' if which else 'classification scores'
    with pytest.raises(FloatingPointError, match=f'{name} of level 2'):
        head.loss_by_feat(*outs, gts, metas)


def test_no_anchor_inside_the_image_is_an_error():
    train_cfg = copy.deepcopy(head_cfg().train_cfg)
    train_cfg.allowed_border = 0
    head = MODELS.build(head_cfg(train_cfg=train_cfg))
    metas, gts, pad_hw, gen = make_batch([(20, 20)], [1])
    outs = random_outputs(pad_hw, 1, gen)
    with pytest.raises(ValueError, match='no valid anchor inside'):
        head.loss_by_feat(*outs, gts, metas)


def test_nan_scores_never_become_detections():
    head, _ = build_pair()
    metas, _, pad_hw, gen = make_batch([(200, 260)], [0])
    outs = random_outputs(pad_hw, 1, gen)
    for s in outs[0]:
        s.fill_(float('nan'))
    result = head.predict_by_feat(*outs, batch_img_metas=metas)[0]
    assert len(result) == 0


def test_sampling_samplers_are_refused():
    train_cfg = copy.deepcopy(head_cfg().train_cfg)
    train_cfg.sampler = dict(type='RandomSampler', num=256,
                             pos_fraction=0.5)
    with pytest.raises(ValueError, match='no sampling'):
        MODELS.build(head_cfg(train_cfg=train_cfg))


def test_half_precision_outputs_give_the_fp32_loss():
    """Under AMP the maps are fp16; the loss is computed in fp32 and the
    finite check must not overflow on large fp16 sums."""
    head, _ = build_pair()
    metas, gts, pad_hw, gen = make_batch([(400, 512)], [5])
    cls_scores, bbox_preds = random_outputs(pad_hw, 1, gen)
    cls_scores = [(s + 8).half() for s in cls_scores]  # sums > 65504
    bbox_preds = [b.half() for b in bbox_preds]
    assert cls_scores[0].float().sum() > 65504
    low = losses_of(head, (cls_scores, bbox_preds), gts, metas)
    ref = losses_of(head, ([s.float() for s in cls_scores],
                           [b.float() for b in bbox_preds]), gts, metas)
    torch.testing.assert_close(low['loss_cls'].float(), ref['loss_cls'],
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(low['loss_bbox'].float(), ref['loss_bbox'],
                               rtol=1e-3, atol=0)


@pytest.mark.parametrize('reg_decoded', [False, True])
def test_bf16_autocast_losses_are_fp32_and_close(reg_decoded):
    """Under bf16 autocast (mmretina.BF16OptimWrapper) the losses come out
    fp32 and near the fp32 ones; decoded boxes are computed in fp32."""
    overrides = {}
    if reg_decoded:
        overrides = dict(reg_decoded_bbox=True,
                         loss_bbox=dict(type='GIoULoss', loss_weight=2.0))
    head = MODELS.build(head_cfg('mmretina.', **overrides))
    metas, gts, pad_hw, gen = make_batch([(320, 320), (320, 288)], [20, 6])
    feats = head_outputs(head, pad_hw, 2, gen)
    ref = head.loss_by_feat(*head(feats), gts, metas)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = head(feats)
        assert outs[0][0].dtype == torch.bfloat16
        got = head.loss_by_feat(*outs, gts, metas)
    for key in ('loss_cls', 'loss_bbox'):
        assert got[key].dtype == torch.float32
        torch.testing.assert_close(got[key], ref[key], rtol=3e-2, atol=0)
        got[key].backward(retain_graph=True)


def test_tuple_neg_iou_thr_with_an_empty_image_matches_mmdet():
    """mmdet trains an image without ground truth as all background, also
    when ``neg_iou_thr`` is a range that excludes IoU 0."""
    train_cfg = head_cfg()['train_cfg']
    train_cfg['assigner'] = dict(
        type='mmretina.MaxIoUAssigner', pos_iou_thr=0.5,
        neg_iou_thr=(0.1, 0.4), min_pos_iou=0, ignore_iof_thr=-1)
    torch.manual_seed(0)
    ours = MODELS.build(head_cfg(train_cfg=copy.deepcopy(train_cfg)))
    train_cfg['assigner']['type'] = 'MaxIoUAssigner'
    theirs = MODELS.build(head_cfg('', train_cfg=train_cfg))
    theirs.load_state_dict(ours.state_dict(), strict=True)
    shapes = [(192, 256)] * 3
    metas, gts, pad_hw, gen = make_batch(shapes, [5, 0, 3], seed=11)
    feats = head_outputs(ours, pad_hw, 3, gen)
    mine = losses_of(ours, ours(feats), gts, metas)
    ref = losses_of(theirs, theirs(feats), gts, metas)
    print('loss_cls mmdet', float(ref['loss_cls']), 'mmretina',
          float(mine['loss_cls']))
    torch.testing.assert_close(mine['loss_cls'], ref['loss_cls'], rtol=1e-5,
                               atol=0)
    torch.testing.assert_close(mine['loss_bbox'], ref['loss_bbox'],
                               rtol=1e-5, atol=1e-7)


def test_mmdet_anchor_generator_and_assigner_in_our_head_match_mmdet():
    """A config that swaps only the head type keeps mmdet's
    AnchorGenerator and MaxIoUAssigner: same losses."""
    overrides = dict(
        anchor_generator=dict(
            type='AnchorGenerator', octave_base_scale=4,
            scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32, 64, 128]))
    cfg = head_cfg('', **copy.deepcopy(overrides))
    cfg['type'] = 'mmretina.RetinaHead'
    ours = MODELS.build(cfg)
    theirs = MODELS.build(head_cfg('', **overrides))
    theirs.load_state_dict(ours.state_dict(), strict=True)
    metas, gts, pad_hw, gen = make_batch([(200, 300), (256, 180)], [3, 0])
    feats = head_outputs(ours, pad_hw, 2, gen)
    mine = losses_of(ours, ours(feats), gts, metas)
    ref = losses_of(theirs, theirs(feats), gts, metas)
    for key in ('loss_cls', 'loss_bbox'):
        torch.testing.assert_close(mine[key], ref[key], rtol=1e-5, atol=1e-7)


def test_anchor_diagnostics_are_logged_beside_the_losses():
    ours, _ = build_pair()
    metas, gts, pad_hw, gen = make_batch([(200, 300), (256, 180)], [3, 5])
    # a ground truth far outside every anchor's reach gets no positive
    gts[1].bboxes[0] = torch.tensor([5000., 5000., 5010., 5010.])
    outs = ours(head_outputs(ours, pad_hw, 2, gen))
    losses = ours.loss_by_feat(*outs, gts, metas)
    assert set(losses) == {'loss_cls', 'loss_bbox', 'pos_per_img',
                           'gt_with_pos'}
    targets = ours.get_targets(
        ours._priors([tuple(o.shape[-2:]) for o in outs[0]], torch.float32,
                     torch.device('cpu'))[1],
        ours._batch_valid_flags([tuple(o.shape[-2:]) for o in outs[0]],
                                metas, torch.device('cpu')), gts, metas)
    assert float(losses['pos_per_img']) == len(targets.pos_inds) / 2
    assert float(losses['gt_with_pos']) == pytest.approx(7 / 8)
    # mmengine sums only the keys with 'loss' in them
    from mmengine.model import BaseModel
    total, log_vars = BaseModel.parse_losses(None, losses)
    assert torch.equal(total, losses['loss_cls'] + losses['loss_bbox'])
    assert 'gt_with_pos' in log_vars


def test_one_warning_when_many_ground_truths_get_no_positive():
    import logging

    from mmengine.logging import MMLogger

    from mmretina.models.dense_heads import monitor
    ours, _ = build_pair()
    metas, gts, pad_hw, gen = make_batch([(128, 128)], [4])
    # two of four boxes unreachable: 50% without a positive anchor
    gts[0].bboxes[:2] = torch.tensor([[5000., 5000., 5004., 5004.]] * 2)
    outs = ours(head_outputs(ours, pad_hw, 1, gen))
    logger = MMLogger.get_instance('mmretina_diag_test')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        with torch.no_grad():
            for _ in range(monitor.DIAGNOSTIC_ITERS + 5):
                ours.loss_by_feat(*outs, gts, metas)
    finally:
        logger.removeHandler(handler)
    warnings = [r.getMessage() for r in records
                if 'got no positive anchor' in r.getMessage()]
    assert len(warnings) == 1
    assert '50% of the 200 ground truths' in warnings[0]
    assert 'analyze_anchors.py' in warnings[0]


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_maps_predict_in_fp32(dtype):
    """Under autocast the maps are bf16 / fp16: decoding and mmcv's NMS
    (fp32 only) run in fp32, on the same candidates as the fp32 maps."""
    ours, _ = build_pair()
    metas, _, pad_hw, gen = make_batch([(200, 300)], [0], seed=4)
    cls_scores, bbox_preds = random_outputs(pad_hw, 1, gen)
    half = ([c.to(dtype) for c in cls_scores],
            [b.to(dtype) for b in bbox_preds])
    ref = ours.predict_by_feat(
        [c.float() for c in half[0]], [b.float() for b in half[1]],
        batch_img_metas=metas, rescale=True)[0]
    got = ours.predict_by_feat(*half, batch_img_metas=metas,
                               rescale=True)[0]
    assert got.bboxes.dtype == got.scores.dtype == torch.float32
    assert len(got) == len(ref) == 100
    torch.testing.assert_close(got.bboxes, ref.bboxes)
    torch.testing.assert_close(got.scores, ref.scores)


def test_channels_last_maps_give_the_same_loss_and_gradient():
    ours, _ = build_pair()
    metas, gts, pad_hw, gen = make_batch([(200, 300), (256, 180)], [3, 5])
    feats = head_outputs(ours, pad_hw, 2, gen)
    results = []
    for channels_last in (False, True):
        x = [f.clone().requires_grad_(True) for f in feats]
        cls_scores, bbox_preds = ours(x)
        if channels_last:
            cls_scores = [c.to(memory_format=torch.channels_last)
                          for c in cls_scores]
            bbox_preds = [b.to(memory_format=torch.channels_last)
                          for b in bbox_preds]
        losses = ours.loss_by_feat(cls_scores, bbox_preds, gts, metas)
        (losses['loss_cls'] + losses['loss_bbox']).backward()
        results.append((losses['loss_cls'].detach(), x[0].grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


@pytest.mark.parametrize('loss_type',
                         ['mmdet.FocalLoss', 'mmretina.FocalLoss'])
def test_foreign_or_own_focal_loss_in_our_head_matches_mmdet(loss_type):
    """mmdet's FocalLoss in our head takes mmdet's rows (the generic path,
    no forward_maps); ours takes the fused maps; both give mmdet's losses
    and gradients, here with a loss weight that is not 1."""
    loss_cls = dict(type=loss_type, use_sigmoid=True, gamma=2.0, alpha=0.25,
                    loss_weight=0.7)
    ours = MODELS.build(head_cfg('mmretina.', loss_cls=dict(loss_cls)))
    assert hasattr(ours.loss_cls, 'forward_maps') == (
        loss_type == 'mmretina.FocalLoss')
    theirs = MODELS.build(
        head_cfg('', loss_cls=dict(loss_cls, type='FocalLoss')))
    theirs.load_state_dict(ours.state_dict(), strict=True)
    metas, gts, pad_hw, gen = make_batch([(200, 300), (256, 180)], [3, 5])
    feats = head_outputs(ours, pad_hw, 2, gen)
    results = []
    for head in (ours, theirs):
        x = [f.clone().requires_grad_(True) for f in feats]
        loss = head.loss_by_feat(*head(x), gts, metas)['loss_cls']
        loss = sum(loss) if isinstance(loss, list) else loss
        loss.backward()
        results.append((loss.detach(), x[0].grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5,
                               atol=1e-7)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4,
                               atol=1e-8)
