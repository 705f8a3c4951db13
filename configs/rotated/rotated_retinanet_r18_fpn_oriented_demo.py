# Rotated RetinaNet on the oriented demo set (real DeepForest backgrounds,
# synthetic vehicles and boats packed at any angle; make it with
# tools/dataset_converters/make_oriented_demo.py): mmrotate's le90 model
# (./rotated_retinanet_r50_fpn_1x_dota_le90.py, mmretina's modules) made
# small enough to train in minutes on a 2-core CPU in fp32, as the
# DeepForest demo (../retinanet_r18_fpn_deepforest.py): half-width R-18
# from scratch, 64-channel FPN and head on strides 8-32. Evaluated with
# mmrotate's DOTAMetric (VOC AP at rotated IoU 0.5). Its axis-aligned twin,
# same data, budget and modules but for the box type, is
# ./retinanet_r18_fpn_oriented_demo_hbox.py. The run and its figures:
# tools/run_oriented_demo.sh, docs/user_guides/oriented.md.
_base_ = './rotated_retinanet_r50_fpn_1x_dota_le90.py'

classes = ('small-vehicle', 'ship')
data_root = 'data/oriented_demo/'
image_size = 256
norm_gn = dict(type='GN', num_groups=32, requires_grad=True)

model = dict(
    data_preprocessor=dict(
        # RGB mean / std of the demo's train images
        mean=[109.0, 116.3, 102.4],
        std=[61.9, 60.4, 52.0]),
    backbone=dict(
        depth=18,
        base_channels=32,
        stem_channels=32,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(
        in_channels=[64, 128, 256],
        out_channels=64,
        start_level=0,
        add_extra_convs=False,
        num_outs=3,
        norm_cfg=norm_gn),
    bbox_head=dict(
        num_classes=len(classes),
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        norm_cfg=norm_gn,
        # objects of 16-36 px: anchors of 16-63 px (three scales an octave
        # apart at strides 8, 16 and 32; mmrotate's ratios 1, 1:2, 2:1)
        anchor_generator=dict(octave_base_scale=2, strides=[8, 16, 32])),
    # lower than the paper's 0.5 / 0.4 (as the DeepForest demo): a 3:1
    # object at 45 degrees has rotated IoU under 0.5 with every anchor of
    # angle 0, and at 0.5 the rotated model got ~1.3 positives an object
    # (the axis-aligned one ~5); 160 iterations reached val AP50 0.013
    train_cfg=dict(assigner=dict(pos_iou_thr=0.4, neg_iou_thr=0.3)),
    test_cfg=dict(nms_pre=1000, max_per_img=300))

backend_args = None
train_pipeline = [
    dict(type='mmdet.LoadImageFromFile', backend_args=backend_args),
    dict(type='mmdet.LoadAnnotations', with_bbox=True, box_type='qbox'),
    dict(type='ConvertBoxType', box_type_mapping=dict(gt_bboxes='rbox')),
    dict(type='mmdet.Resize', scale=(image_size, image_size),
         keep_ratio=True),
    dict(type='mmdet.RandomFlip', prob=0.75,
         direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='mmdet.PackDetInputs')
]
val_pipeline = [
    dict(type='mmdet.LoadImageFromFile', backend_args=backend_args),
    dict(type='mmdet.Resize', scale=(image_size, image_size),
         keep_ratio=True),
    dict(type='mmdet.LoadAnnotations', with_bbox=True, box_type='qbox'),
    dict(type='ConvertBoxType', box_type_mapping=dict(gt_bboxes='rbox')),
    dict(type='mmdet.PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]

# images without labels (inference)
test_pipeline = [
    dict(type='mmdet.LoadImageFromFile', backend_args=backend_args),
    dict(type='mmdet.Resize', scale=(image_size, image_size),
         keep_ratio=True),
    dict(type='mmdet.PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]

train_dataloader = dict(
    batch_size=4,
    num_workers=0,  # small decoded images: no worker processes on 2 cores
    persistent_workers=False,
    dataset=dict(
        type='DOTADataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='train/annfiles/',
        data_prefix=dict(img_path='train/images/'),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='DOTADataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='val/annfiles/',
        data_prefix=dict(img_path='val/images/'),
        test_mode=True,
        pipeline=val_pipeline))
# the test backgrounds are never seen in training or in choosing settings
test_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='DOTADataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='test/annfiles/',
        data_prefix=dict(img_path='test/images/'),
        test_mode=True,
        pipeline=val_pipeline))
val_evaluator = dict(type='DOTAMetric', metric='mAP', iou_thrs=[0.5])
test_evaluator = val_evaluator

# 8 iterations an epoch (32 images, batch 4): 960 iterations in fp32 on a
# 2-core CPU. Chosen on val (docs/user_guides/oriented.md): 20 epochs left
# both models near zero (val AP50 0.013 rotated / 0.001 axis-aligned, at
# IoU thresholds 0.5 / 0.4), 60 gave 0.271 / 0.084 and 120 0.342 / 0.174.
max_epochs = 120
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',  # fp32: the CPUs this runs on lack native bf16
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs,
         T_max=max_epochs, eta_min_ratio=0.01, convert_to_iter_based=True),
]
default_hooks = dict(
    logger=dict(interval=8), checkpoint=dict(interval=max_epochs),
    visualization=dict(type='mmdet.DetVisualizationHook'))
log_processor = dict(window_size=8)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
# the weights' moving average (time constant ~100 iterations) is what is
# validated, saved and tested, as in the DeepForest demo
custom_hooks = [
    dict(type='EMAHook', ema_type='ExponentialMovingAverage',
         momentum=0.01, update_buffers=True, priority=49),
]
randomness = dict(seed=0)
