"""Shared helpers for the tools tests: a tiny synthetic COCO-format data set
and a tiny RetinaNet config (ResNet-18, 32 channels, 128x128 inputs) that is
derived from the repository's ``configs/retinanet_r50_fpn.py``."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO_ROOT, 'tools')
CLASSES = ('square', 'bar')
IMG_SIZE = 128


def make_coco(root, num_images=8, size=IMG_SIZE, seed=0, ann_name='ann.json'):
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


def write_tiny_config(path, data_root, max_iters=4, ckpt_interval=2,
                      base=osp.join(REPO_ROOT, 'configs',
                                    'retinanet_r50_fpn.py')):
    """Write a tiny config file that inherits ``base``; returns its path."""
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


def tool_env(threads=1):
    """Environment for the tool subprocesses: repo on PYTHONPATH, few
    threads (the test machine has 2 cores shared with others)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        env[var] = str(threads)
    env.pop('CUDA_VISIBLE_DEVICES', None)
    return env


def run_tool(args, timeout=300, env=None, cwd=None):
    """Run ``args`` (a list) as a subprocess; return CompletedProcess with
    text stdout+stderr in ``.stdout``."""
    return subprocess.run(
        args,
        cwd=cwd or REPO_ROOT,
        env=env or tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)


def python_tool(name, *args, **kwargs):
    return run_tool([sys.executable, osp.join(TOOLS, name), *map(str, args)],
                    **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class _Helpers:
    """Helper functions handed to the tests through the ``tools_helpers``
    fixture (test modules should not import ``conftest`` by name)."""
    REPO_ROOT = REPO_ROOT
    TOOLS = TOOLS
    CLASSES = CLASSES
    IMG_SIZE = IMG_SIZE
    make_coco = staticmethod(make_coco)
    write_tiny_config = staticmethod(write_tiny_config)
    tool_env = staticmethod(tool_env)
    run_tool = staticmethod(run_tool)
    python_tool = staticmethod(python_tool)
    free_port = staticmethod(free_port)


@pytest.fixture(scope='session')
def tools_helpers():
    return _Helpers


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """Root of a tiny synthetic COCO-format set (images/ + ann.json)."""
    root = tmp_path_factory.mktemp('tiny_coco')
    make_coco(str(root))
    return str(root)
