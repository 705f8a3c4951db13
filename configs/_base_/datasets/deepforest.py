# DeepForest NEON tree crowns (COCO format), one class ``tree``.
# Build it with: python tools/dataset_converters/prepare_deepforest.py
#   train: 80 tiles of 400x400 px (overlap 100) cut from two Yellowstone (YELL)
#          images, 1587 boxes;
#   val:   OSBS_029 (Florida) + SOAP_061 (California), whole 400x400 images,
#          98 boxes -- other sites than train (domain shift). Since issue
#          15 these are test images: recipes are chosen on choose_train /
#          choose_val (a spatial hold-out of the training site; override
#          the three ann_file fields, docs/experiments/deepforest.md).
# mmretina's CocoDataset / LoadImageFromFile: mmdet's, plus clear errors for
# broken annotations or images and logged filtering of degenerate boxes.
dataset_type = 'mmretina.CocoDataset'
data_root = 'data/deepforest/'
metainfo = dict(classes=('tree', ), palette=[(34, 139, 34)])
# Ground sample distance of the imagery, in metres: NEON's orthophotos are
# 0.1 m. `mmretina predict` / `evaluate` read rasters of another GSD
# resampled to it (--gsd auto); the checkpoints carry it in their config.
gsd = 0.1
backend_args = None

# Train (experiment E13 in docs/experiments/deepforest.md): scale jitter
# 0.75-1.33 (crown sizes differ between sites; this was the largest gain of
# the augmentations tried), random 320x320 crops (more, cheaper iterations
# on 2 CPU cores), all 8 flips / 90-degree rotations (aerial imagery has no
# canonical orientation), moderate colour jitter for the cross-site
# transfer, and crop slivers < 4 px dropped (a zero-width box left by
# crop/rotation gives an infinite regression target).
train_pipeline = [
    # each tile decoded once per process, not once per epoch (80 tiles of
    # 400 px: 38 MB; PNG decoding was half of the data pipeline)
    dict(
        type='mmretina.LoadImageFromFile',
        backend_args=backend_args,
        cache_bytes=256 * 2**20),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomResize',
        scale=(400, 400),
        ratio_range=(0.75, 1.33),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=(320, 320), allow_negative_crop=True),
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
        brightness_delta=24,
        contrast_range=(0.7, 1.3),
        saturation_range=(0.7, 1.3),
        hue_delta=9),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(4, 4), keep_empty=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    # mmretina's loader under mmdet's name (_scope_ picks the registry):
    # mmdet's DetInferencer and SAHI's mmdet backend look it up by name.
    dict(type='LoadImageFromFile', _scope_='mmretina',
         backend_args=backend_args),
    # val images are 400x400 already; Resize records scale_factor (needed to
    # rescale predictions) and is a no-op otherwise.
    dict(type='Resize', scale=(400, 400), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=False, min_size=2),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/val.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
