# Reusing mmretina's modules from a plain mmdet config.
#
# This is mmdet's own ATSS detector (configs/atss/atss_r50_fpn_1x_coco.py):
# detector `ATSS`, head `ATSSHead`, assigner `ATSSAssigner`, all resolved in
# mmdet's registry (default_scope='mmdet'). Only two sub-modules come from
# mmretina, selected with the `mmretina.` scope prefix:
#   * `mmretina.AnchorGenerator` as the head's anchor generator,
#   * `mmretina.FocalLoss` as the head's classification loss.
# The same works for any mmdet model, e.g. a RetinaNet with a PAFPN neck:
#   neck=dict(type='PAFPN', in_channels=[256, 512, 1024, 2048],
#             out_channels=256, start_level=1, add_extra_convs='on_input',
#             num_outs=5),
#   bbox_head=dict(type='mmretina.RetinaHead', ...),
#   train_cfg=dict(assigner=dict(type='mmretina.MaxIoUAssigner', ...), ...)
#
# All that is needed is that `mmretina` gets imported, which
# `custom_imports` does (it is also set in our default_runtime.py; a config
# living outside this repository would add it itself, as here).
_base_ = [
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/schedule_1x.py',
    './_base_/default_runtime.py',
]

default_scope = 'mmdet'
custom_imports = dict(imports=['mmretina'], allow_failed_imports=False)

# model settings
model = dict(
    type='ATSS',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs='on_output',
        num_outs=5),
    bbox_head=dict(
        type='ATSSHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        anchor_generator=dict(
            type='mmretina.AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(
            type='mmretina.FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_centerness=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    # training and testing settings
    train_cfg=dict(
        assigner=dict(type='ATSSAssigner', topk=9),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))

# optimizer
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
