# The axis-aligned twin of ./rotated_retinanet_r18_fpn_oriented_demo.py:
# the same data, augmentation, backbone, FPN, head, loss, assigner
# thresholds, schedule and seed, with axis-aligned boxes in place of
# rotated ones (mmretina's axis-aligned RetinaNet): it trains on the
# rotated labels' enclosing boxes (mmrotate's ConvertBoxType, qbox ->
# hbox), matches anchors by axis-aligned IoU, regresses (x, y, w, h) and
# suppresses with mmdet's NMS at IoU 0.5. It is scored on the same rotated
# labels with the same metric: mmretina.DOTAMetric is mmrotate's DOTAMetric
# reading its boxes as rotated boxes of angle 0.
_base_ = './rotated_retinanet_r18_fpn_oriented_demo.py'

custom_imports = dict(
    imports=['mmretina', 'mmretina.evaluation.dota'],
    allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(boxtype2tensor=True),
    bbox_head=dict(
        anchor_generator=dict(
            _delete_=True,
            type='mmretina.AnchorGenerator',
            octave_base_scale=2,
            scales_per_octave=3,
            ratios=[1.0, 0.5, 2.0],
            strides=[8, 16, 32]),
        bbox_coder=dict(
            _delete_=True,
            type='mmdet.DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0])),
    train_cfg=dict(
        assigner=dict(iou_calculator=dict(type='mmdet.BboxOverlaps2D'))),
    test_cfg=dict(nms=dict(type='nms', iou_threshold=0.5)))

train_pipeline = [
    dict(type='mmdet.LoadImageFromFile', backend_args=None),
    dict(type='mmdet.LoadAnnotations', with_bbox=True, box_type='qbox'),
    # the enclosing axis-aligned box of each rotated label
    dict(type='ConvertBoxType', box_type_mapping=dict(gt_bboxes='hbox')),
    dict(type='mmdet.Resize', scale=({{_base_.image_size}},
                                     {{_base_.image_size}}),
         keep_ratio=True),
    dict(type='mmdet.RandomFlip', prob=0.75,
         direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='mmdet.PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_evaluator = dict(type='mmretina.DOTAMetric', metric='mAP',
                     iou_thrs=[0.5])
test_evaluator = val_evaluator
