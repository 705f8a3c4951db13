"""Shared fixtures of the tests and the benchmarks (as ``mmdet.testing``):
mmdet's RetinaNet head config, a tiny synthetic COCO-format data set and a
tiny RetinaNet config derived from the repository's
``configs/retinanet_r50_fpn.py``; mmengine's current scope and logger kept
across Runners built in a test."""
import contextlib
import json
import logging
import os
import os.path as osp
from typing import Iterator, Sequence

import numpy as np
from mmengine.config import ConfigDict

__all__ = ['retina_head_cfg', 'CLASSES', 'IMG_SIZE', 'make_coco',
           'TINY_CONFIG', 'write_tiny_config', 'detection_rows',
           'scope_and_logger_kept']


def retina_head_cfg(prefix: str = 'mmretina.',
                    num_classes: int = 80,
                    in_channels: int = 256,
                    stacked_convs: int = 4,
                    feat_channels: int = 256,
                    strides: Sequence[int] = (8, 16, 32, 64, 128),
                    **overrides) -> ConfigDict:
    """mmdet's ``retinanet_r50_fpn`` head config (9 anchors, focal loss
    gamma 2 / alpha 0.25, IoU 0.5 / 0.4), with mmretina's types when
    ``prefix`` is ``'mmretina.'`` and mmdet's when it is ``''``; top-level
    keys in ``overrides`` replace the defaults."""
    cfg = dict(
        type=f'{prefix}RetinaHead',
        num_classes=num_classes,
        in_channels=in_channels,
        stacked_convs=stacked_convs,
        feat_channels=feat_channels,
        anchor_generator=dict(
            type=f'{prefix}AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=list(strides)),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(
            type=f'{prefix}FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0),
        train_cfg=dict(
            assigner=dict(
                type=f'{prefix}MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.4,
                min_pos_iou=0,
                ignore_iof_thr=-1),
            sampler=dict(type='PseudoSampler'),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        test_cfg=dict(
            nms_pre=1000,
            min_bbox_size=0,
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100))
    cfg.update(overrides)
    return ConfigDict(cfg)


@contextlib.contextmanager
def scope_and_logger_kept() -> Iterator[None]:
    """mmengine's current ``DefaultScope`` and ``MMLogger`` after the block
    are those before it.

    A Runner registers a ``DefaultScope`` and an ``MMLogger`` under its
    experiment name and so makes them mmengine's current ones, the logger
    with a ``FileHandler`` open in the work dir. Left behind, they make
    later builds resolve types in the Runner's ``default_scope`` (parity
    tests once built in the wrong scope that way) and ``logger='current'``
    write to a file in a deleted temporary dir. On leaving the block the
    instances created in it are removed (as mmengine's
    ``DefaultScope.overwrite_default_scope`` puts its ``_instance_dict``
    back) and the file handlers of those loggers closed.
    """
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    managers = (DefaultScope, MMLogger)
    before = {cls: dict(cls._instance_dict) for cls in managers}
    try:
        yield
    finally:
        for name, logger in MMLogger._instance_dict.items():
            if name not in before[MMLogger]:
                for handler in logger.handlers[:]:
                    if isinstance(handler, logging.FileHandler):
                        handler.close()
                        logger.removeHandler(handler)
        for cls in managers:
            # in place and in the old order: the current one is the last
            cls._instance_dict.clear()
            cls._instance_dict.update(before[cls])


CLASSES = ('square', 'bar')
IMG_SIZE = 128


def detection_rows(results):
    """Detections of one image as (M, D + 2) rows (box, score, label) in a
    canonical order: descending score, exact score ties by label, then box.
    mmcv's rotated NMS may list two detections of exactly equal score in
    either order; comparing these rows compares everything else exactly.

    Args:
        results (InstanceData): ``bboxes`` (M, D) (tensor or box type),
            ``scores`` (M,), ``labels`` (M,).

    Returns:
        Tensor: (M, D + 2).
    """
    import torch
    from mmdet.structures.bbox import get_box_tensor
    boxes = get_box_tensor(results.bboxes)
    rows = torch.cat([boxes, results.scores[:, None],
                      results.labels[:, None].to(boxes.dtype)], 1)
    dim = boxes.size(1)
    keys = [rows[:, i].numpy() for i in reversed(range(dim))]
    order = np.lexsort(keys + [rows[:, dim + 1].numpy(),
                               -rows[:, dim].numpy()])
    return rows[torch.from_numpy(order)]


def make_coco(root: str, num_images: int = 8, size: int = IMG_SIZE,
              seed: int = 0, ann_name: str = 'ann.json') -> str:
    """Write ``num_images`` synthetic images (filled rectangles on noise)
    and a COCO json under ``root``. Returns the json path."""
    import cv2
    rng = np.random.RandomState(seed)
    img_dir = osp.join(root, 'images')
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for i in range(num_images):
        img = rng.randint(0, 60, (size, size, 3)).astype(np.uint8)
        name = f'{i:04d}.png'
        for _ in range(rng.randint(1, 4)):
            cls = rng.randint(len(CLASSES))
            w = rng.randint(24, 56)
            h = w if cls == 0 else max(12, w // 3)
            x = rng.randint(0, size - w)
            y = rng.randint(0, size - h)
            color = (255, 80, 80) if cls == 0 else (80, 255, 80)
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, -1)
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=i + 1,
                    category_id=cls + 1,
                    bbox=[float(x), float(y), float(w), float(h)],
                    area=float(w * h),
                    iscrowd=0))
            ann_id += 1
        cv2.imwrite(osp.join(img_dir, name), img)
        images.append(dict(id=i + 1, file_name=name, width=size, height=size))
    categories = [dict(id=k + 1, name=n) for k, n in enumerate(CLASSES)]
    ann_file = osp.join(root, ann_name)
    with open(ann_file, 'w') as f:
        json.dump(
            dict(images=images, annotations=annotations,
                 categories=categories), f)
    return ann_file


TINY_CONFIG = '''
_base_ = {base!r}

data_root = {data_root!r}
classes = {classes!r}
img_scale = ({size}, {size})

model = dict(
    backbone=dict(depth=18, frozen_stages=-1, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    bbox_head=dict(
        num_classes={num_classes},
        in_channels=32,
        feat_channels=32,
        stacked_convs=1))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='ann.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='ann.json',
        data_prefix=dict(img='images/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'ann.json')
test_evaluator = val_evaluator

train_cfg = dict(max_iters={max_iters}, val_interval=1000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(
        type='MultiStepLR',
        begin=0,
        end={max_iters},
        by_epoch=False,
        milestones=[{max_iters}],
        gamma=0.1)
]
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval={ckpt_interval}))
log_processor = dict(window_size=1)
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
'''


def write_tiny_config(path: str, data_root: str, max_iters: int = 4,
                      ckpt_interval: int = 2, base: str = None) -> str:
    """Write a tiny config file (ResNet-18, 32 channels, 128x128 inputs)
    that inherits ``base`` (default: the repository's
    ``configs/retinanet_r50_fpn.py``); returns its path."""
    if base is None:
        base = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                        'configs', 'retinanet_r50_fpn.py')
        if not osp.exists(base):  # installed: the configs shipped in .mim
            base = osp.join(osp.dirname(osp.abspath(__file__)), '.mim',
                            'configs', 'retinanet_r50_fpn.py')
    data_root = data_root.rstrip('/') + '/'
    with open(path, 'w') as f:
        f.write(
            TINY_CONFIG.format(
                base=base,
                data_root=data_root,
                classes=CLASSES,
                num_classes=len(CLASSES),
                size=IMG_SIZE,
                max_iters=max_iters,
                ckpt_interval=ckpt_interval))
    return str(path)
