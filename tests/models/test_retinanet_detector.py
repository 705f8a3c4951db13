"""A whole mmdet RetinaNet (ResNet + FPN) with our head vs with mmdet's."""
import copy

import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData


def detector_cfg(prefix):
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_size_divisor=32),
        backbone=dict(type='ResNet', depth=18, num_stages=4,
                      out_indices=(1, 2, 3), frozen_stages=-1,
                      norm_cfg=dict(type='BN', requires_grad=True),
                      norm_eval=True, style='pytorch', init_cfg=None),
        neck=dict(type='FPN', in_channels=[128, 256, 512], out_channels=32,
                  start_level=0, add_extra_convs='on_input', num_outs=5),
        bbox_head=dict(
            type=f'{prefix}RetinaHead',
            num_classes=3,
            in_channels=32,
            stacked_convs=2,
            feat_channels=32,
            anchor_generator=dict(
                type=f'{prefix}AnchorGenerator',
                octave_base_scale=4,
                scales_per_octave=3,
                ratios=[0.5, 1.0, 2.0],
                strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                            target_means=[.0, .0, .0, .0],
                            target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(type=f'{prefix}FocalLoss', use_sigmoid=True,
                          gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(
            assigner=dict(type=f'{prefix}MaxIoUAssigner', pos_iou_thr=0.5,
                          neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1),
            sampler=dict(type='PseudoSampler'),
            allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                      nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=100))


def make_data(gen):
    """Three images of different sizes: 2, 0 and 45 ground truths."""
    inputs, samples = [], []
    for (h, w), n in zip([(150, 200), (128, 96), (180, 180)], [2, 0, 45]):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w - 20, h - 20])
        wh = 12 + torch.rand(n, 2, generator=gen) * 60
        boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([w, h]))], 1)
        sample = DetDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.randint(0, 3, (n, ), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_detector_losses_grads_and_predictions_match_mmdet():
    torch.manual_seed(0)
    ours = MODELS.build(ConfigDict(detector_cfg('mmretina.')))
    ours.init_weights()
    # Spread the scores of the untrained model: with the prior init every
    # score is ~0.01 and ties make the nms_pre cut ill-defined (mmdet's
    # unstable sort orders ties arbitrarily).
    with torch.no_grad():
        ours.bbox_head.retina_cls.weight.normal_(0, 0.3)
    theirs = MODELS.build(ConfigDict(detector_cfg('')))
    # Official mmdet checkpoints load into our head with strict=True.
    theirs.load_state_dict(ours.state_dict(), strict=True)
    theirs.bbox_head.load_state_dict(ours.bbox_head.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(0)
    data = make_data(gen)
    results = []
    for model in (ours, theirs):
        model.train()
        model.zero_grad()
        batch = model.data_preprocessor(copy.deepcopy(data), True)
        losses = model.loss(batch["inputs"], batch["data_samples"])
        loss_cls = sum(losses['loss_cls']) if isinstance(
            losses['loss_cls'], list) else losses['loss_cls']
        loss_bbox = sum(losses['loss_bbox']) if isinstance(
            losses['loss_bbox'], list) else losses['loss_bbox']
        (loss_cls + loss_bbox).backward()
        grads = {n: p.grad.clone() for n, p in model.bbox_head.named_parameters()}
        model.eval()
        with torch.no_grad():
            batch = model.data_preprocessor(copy.deepcopy(data), False)
            # A lower threshold so the untrained model predicts something.
            model.bbox_head.test_cfg['score_thr'] = 0.005
            preds = model.predict(batch["inputs"], batch["data_samples"])
        results.append((loss_cls.detach(), loss_bbox.detach(), grads, preds))
    (oc, ob, og, op), (tc, tb, tg, tp) = results
    torch.testing.assert_close(oc, tc, rtol=1e-5, atol=0)
    torch.testing.assert_close(ob, tb, rtol=1e-5, atol=0)
    for name in tg:
        torch.testing.assert_close(og[name], tg[name], rtol=1e-4, atol=1e-6,
                                   msg=name)
    total = 0
    for a, b in zip(op, tp):
        a, b = a.pred_instances, b.pred_instances
        assert len(a) == len(b)
        total += len(a)
        torch.testing.assert_close(a.scores, b.scores)
        torch.testing.assert_close(a.bboxes, b.bboxes)
        assert torch.equal(a.labels, b.labels)
    assert total > 0
