"""The head's post-processing functions, alone and against mmdet."""
import math

import pytest
import torch
from mmcv.ops import batched_nms

from mmretina.models.dense_heads.postprocess import (class_aware_nms,
                                                     logit_threshold,
                                                     select_topk_candidates)
from test_retina_head import build_pair, make_batch, random_outputs


@pytest.mark.parametrize('max_per_img', [1, 7, 30, 100, 2000])
@pytest.mark.parametrize('iou', [0.3, 0.7])
def test_early_stopping_nms_keeps_mmcv_results(max_per_img, iou):
    gen = torch.Generator().manual_seed(max_per_img)
    xy = torch.rand(3000, 2, generator=gen) * 300
    boxes = torch.cat([xy, xy + 10 + torch.rand(3000, 2, generator=gen) * 60],
                      1)
    scores = torch.rand(3000, generator=gen)
    labels = torch.randint(0, 5, (3000, ), generator=gen)
    cfg = dict(type='nms', iou_threshold=iou)
    ref_dets, ref_keep = batched_nms(boxes, scores, labels, cfg)
    det_scores, keep = class_aware_nms(boxes, scores, labels, cfg, max_per_img)
    assert torch.equal(keep[:max_per_img], ref_keep[:max_per_img])
    torch.testing.assert_close(det_scores[:max_per_img],
                               ref_dets[:max_per_img, -1])


def test_nms_pre_minus_one_keeps_every_candidate_where_mmdet_drops_one():
    """Differences from mmdet, on purpose: ``nms_pre=-1`` keeps all
    candidates; mmdet's ``[:min(-1, n)]`` slice drops the lowest-scored one
    of every level."""
    ours, theirs = build_pair()
    metas, _, pad_hw, gen = make_batch([(96, 128)], [0], seed=3)
    outs = random_outputs(pad_hw, 1, gen)
    cfg = dict(nms_pre=-1, min_bbox_size=-1, score_thr=0.05,
               nms=dict(type='nms', iou_threshold=0.5), max_per_img=-1)
    mine = ours.predict_by_feat(*outs, batch_img_metas=metas, cfg=cfg,
                                with_nms=False)[0]
    ref = theirs.predict_by_feat(*outs, batch_img_metas=metas, cfg=cfg,
                                 with_nms=False)[0]
    passing = sum(int((s.sigmoid() > 0.05).sum()) for s in outs[0])
    assert len(mine) == passing
    assert len(ref) == passing - len(outs[0])  # one fewer per level
    # Everything mmdet keeps, we keep with the same score and box.
    key = {(round(float(s), 6), tuple(round(float(v), 3) for v in b))
           for s, b in zip(mine.scores, mine.bboxes)}
    assert all((round(float(s), 6), tuple(round(float(v), 3) for v in b))
               in key for s, b in zip(ref.scores, ref.bboxes))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_logit_prethreshold_never_drops_a_passing_score_in_half_maps(dtype):
    """A logit just above the exact bound passes ``sigmoid(x) > thr``; the
    loose test on the (fp16 / bf16) map must not cut it. A threshold cast to
    the map's dtype would round up past it."""
    info = torch.finfo(dtype)
    for x in torch.linspace(-6, 1, 200).to(dtype).unique():
        # a score_thr whose logit lies 0.3 ulp below x (still passes)
        ulp = float(torch.nextafter(x, x.new_tensor(math.inf))) - float(x)
        thr = 1 / (1 + math.exp(-(float(x) - 0.3 * ulp)))
        bound = logit_threshold(thr, dtype)
        assert float(torch.tensor(bound, dtype=dtype)) == bound
        assert float(x) > bound, (float(x), thr, bound, info)
    logits = torch.tensor([-2.9375, -2.953125, -3.0], dtype=dtype)
    thr = 1 / (1 + math.exp(2.9375 + 1e-3 * 0.5))
    cand = select_topk_candidates([logits.view(1, 3, 1, 1)], 3, thr, -1)
    exact = (logits.float().sigmoid() > thr).sum()
    assert len(cand['score']) == int(exact) >= 1


def test_logit_threshold_outside_0_1_selects_everything():
    assert logit_threshold(0, torch.float32) == -math.inf
    assert logit_threshold(1.5, torch.bfloat16) == -math.inf
