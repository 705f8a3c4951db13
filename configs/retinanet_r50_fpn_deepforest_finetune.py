# Fine-tune DeepForest's released tree model (weecology/deepforest-tree, a
# torchvision RetinaNet R-50-FPN pretrained on crowns of 22 NEON sites) on
# your own chips. Start from the converted checkpoint
# (docs/user_guides/pretrained_models.md):
#
#   python tools/model_converters/torchvision_to_mmretina.py \
#       deepforest-tree/model.safetensors \
#       checkpoints/deepforest_tree_mmretina.pth
#   python tools/train.py configs/retinanet_r50_fpn_deepforest_finetune.py
#
# The model section is what the converter writes for that checkpoint
# (torchvision's v1 layout: FrozenBN backbone, P6 from P5, torchvision's
# anchors, resize and NMS semantics; tests/models/converters checks that the
# two agree), so the converted weights load with strict keys and start from
# DeepForest's own detections. Data: the COCO-format chips of
# _base_/datasets/deepforest.py (data/deepforest/); point data_root and the
# ann_file fields at your chips for your own data.
_base_ = ['./_base_/datasets/deepforest.py', './_base_/default_runtime.py']

load_from = 'checkpoints/deepforest_tree_mmretina.pth'

model = dict(
    type='RetinaNet',
    # torchvision's GeneralizedRCNNTransform: ImageNet mean / std of 0-1 RGB
    # (x 255 here), zero padding to 32 after normalising
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
        # as torchvision fine-tunes a pretrained backbone
        # (trainable_backbone_layers=3): stem and stage 1 frozen,
        # FrozenBatchNorm2d everywhere (batch statistics of 2 images would
        # ruin the pretrained ones)
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False, eps=1e-5),
        norm_eval=True,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs='on_output',  # v1: P6 from P5
        relu_before_extra_convs=True,
        num_outs=5),
    bbox_head=dict(
        type='mmretina.RetinaHead',
        num_classes=1,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        norm_cfg=None,
        anchor_generator=dict(
            type='mmretina.TorchvisionAnchorGenerator',
            sizes=[[32, 40, 50], [64, 80, 101], [128, 161, 203],
                   [256, 322, 406], [512, 645, 812]],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(
            type='mmretina.FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(
            type='mmretina.MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iof_thr=-1),
        sampler=dict(type='PseudoSampler'),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    # torchvision's post-processing with DeepForest's NMS IoU (0.05: crowns
    # seldom overlap); score threshold 0.05 rather than DeepForest's 0.5 so
    # that mAP sees the whole precision-recall curve (raise it for maps)
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=-1,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.05, split_thr=1001),
        max_per_img=300))

# Augmentation: the 8 flips / 90-degree rotations of aerial chips and mild
# colour jitter; no scale jitter or crops: the pretrained model's anchors and
# features are tuned to DeepForest's scale (10 cm chips of 400 px upsampled to
# 800 px by torchvision's resize), which TorchvisionResize reproduces last.
train_pipeline = [
    dict(type='mmretina.LoadImageFromFile', cache_bytes=256 * 2**20),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomFlip',
        prob=[0.25, 0.25, 0.25],
        direction=['horizontal', 'vertical', 'diagonal']),
    dict(
        type='Rotate',
        prob=0.5,
        min_mag=90.0,
        max_mag=90.0,
        reversal_prob=0.5,
        img_border_value=0),
    dict(
        type='PhotoMetricDistortion',
        brightness_delta=16,
        contrast_range=(0.8, 1.2),
        saturation_range=(0.8, 1.2),
        hue_delta=5),
    dict(type='mmretina.TorchvisionResize', min_size=800, max_size=1333),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(2, 2), keep_empty=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    # mmretina's loader under mmdet's name (_scope_ picks the registry):
    # mmdet's DetInferencer and SAHI's mmdet backend look it up by name.
    dict(type='LoadImageFromFile', _scope_='mmretina'),
    dict(type='mmretina.TorchvisionResize', min_size=800, max_size=1333),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# SGD at lr 1e-3 for 2 images per batch: mmdet's RetinaNet rate (0.01 for
# 16 images) scaled linearly is 1.25e-3; fine-tuning stays a little under
# it. 12 short epochs with a warm-up (the head meets new sites' statistics
# first) and a x0.1 step at epochs 8 and 11; gradient clipping as a guard
# against the first steps on unseen imagery.
max_epochs = 12
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=100),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=2)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=2, max_keep_ckpts=2, save_best='auto'))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
