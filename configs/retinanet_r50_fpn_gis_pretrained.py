# RetinaNet R-50-FPN for a GIS project: training chips cut from georeferenced
# rasters and vector labels by tools/dataset_converters/raster_to_coco.py
# (docs/user_guides/gis_training.md), starting from an ImageNet-pretrained
# backbone.
#
#   python tools/dataset_converters/raster_to_coco.py ortho.tif crowns.gpkg \
#       --out-dir data/chips --chip 400 --split train=0.8,val=0.2 --block 50m
#   # a project config: _base_ = this file, with data_root, classes and
#   # the dataloaders' data_root set (docs/user_guides/gis_training.md, 3.)
#   python tools/train.py configs/my_project.py
#
# The backbone loads torchvision's ImageNet ResNet-50
# (init_cfg type 'CheckedPretrained', mmretina/models/pretrained_init.py):
# resnet50-0676ba61.pth (~98 MB), fetched from download.pytorch.org with its
# hash checked and cached by torch.hub (~/.cache/torch/hub/checkpoints);
# torchvision is not needed. Offline, put the file there or set
# model.backbone.init_cfg.checkpoint to its path. When the weights cannot be
# had, training stops with an error that says how to get them; from scratch
# only with allow_scratch=True in the init_cfg (its BatchNorm then trained,
# no stage frozen). The DeepForest demo (retinanet_r18_fpn_deepforest.py)
# stays from scratch on purpose.
#
# Classes: paste the lines raster_to_coco.py printed (classes, num_classes).
# Anchors: fit them to your chips with
#   python tools/analysis_tools/analyze_anchors.py THIS_CONFIG
# and paste its proposed anchor_generator lines.
_base_ = [
    './_base_/models/retinanet_r50_fpn.py', './_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['mmretina', 'mmretina.models.pretrained_init'],
    allow_failed_imports=False)

data_root = 'data/chips/'
classes = ('tree', )
metainfo = dict(classes=classes)

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='CheckedPretrained',
            checkpoint='torchvision://resnet50')),
    bbox_head=dict(num_classes=len(classes)),
    train_cfg=dict(
        # boxes cut by chip edges are written as ignore regions (iscrowd=1):
        # anchors covered more than half by one are neither positive nor
        # negative
        assigner=dict(ignore_iof_thr=0.5)),
    # orthomosaics hold hundreds of objects per window
    test_cfg=dict(max_per_img=300))

dataset_type = 'mmretina.CocoDataset'
train_pipeline = [
    dict(type='mmretina.LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    # nadir imagery has no up: flips both ways and 90 degree turns
    dict(
        type='RandomFlip',
        prob=[0.25, 0.25, 0.25],
        direction=['horizontal', 'vertical', 'diagonal']),
    dict(
        type='PhotoMetricDistortion',
        brightness_delta=24,
        contrast_range=(0.7, 1.3),
        saturation_range=(0.7, 1.3),
        hue_delta=9),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    # mmretina's loader under mmdet's name (_scope_ picks the registry):
    # mmdet's DetInferencer and SAHI's mmdet backend look it up by name.
    dict(type='LoadImageFromFile', _scope_='mmretina'),
    # no resize: chips and inference windows are seen at the raster's pixel
    # size (Resize by 1 records the scale_factor predictions are mapped
    # back with)
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/val.json',
    metric='bbox',
    format_only=False)
test_evaluator = val_evaluator

# 24 epochs, SGD as the paper (lr 0.01 at batch 16, linear scaling: 0.0025
# at batch 4), warm-up, steps at 16 and 22
max_epochs = 24
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.0025, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[16, 22],
        gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(checkpoint=dict(interval=4, max_keep_ckpts=2))
