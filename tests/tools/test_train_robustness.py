"""Training under bad conditions, end to end with a small RetinaNet
(ResNet-18 at 1/8 width, 16-channel FPN/head) on the synthetic COCO set of
conftest.py:

* a run SIGKILLed after a checkpoint and resumed with --resume ends with the
  same weights as an uninterrupted run; a truncated checkpoint is refused
  with the name of the newest intact one, which then resumes fine;
* a loss turning NaN stops training at that iteration, naming the term,
  without overwriting the good checkpoint;
* bad boxes and images without boxes (mmretina.CocoDataset) train;
* 1000 boxes in one image and images of very different sizes in one batch
  train.
"""
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmretina.engine.checkpoint import load_checkpoint_file

MAX_ITERS = 10
CKPT_INTERVAL = 2

SMALL_CONFIG = '''
_base_ = {tiny!r}

# 1/8-width ResNet-18 and 16-channel FPN/head: a checkpoint is 2 MB and an
# iteration ~0.1 s on one CPU thread.
model = dict(
    backbone=dict(base_channels=8),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    bbox_head=dict(in_channels=16, feat_channels=16))
randomness = dict(seed=0, deterministic=True)
val_cfg = None
val_dataloader = None
val_evaluator = None
custom_hooks = [dict(type='mmretina.CheckFiniteLossHook')]
'''


@pytest.fixture(scope='module')
def small_config(tmp_path_factory, tiny_data, tools_helpers):
    root = tmp_path_factory.mktemp('small_cfg')
    tiny = tools_helpers.write_tiny_config(
        str(root / 'tiny.py'), tiny_data, max_iters=MAX_ITERS,
        ckpt_interval=CKPT_INTERVAL)
    path = root / 'small.py'
    path.write_text(SMALL_CONFIG.format(tiny=tiny))
    return str(path)


def load_ckpt(path):
    return load_checkpoint_file(path, map_location='cpu')


def train_args(h, config, work_dir, *extra):
    return [
        sys.executable,
        osp.join(h.TOOLS, 'train.py'), config, '--work-dir',
        str(work_dir), *map(str, extra)
    ]


# --------------------------------------------------- interrupted training
@pytest.fixture(scope='module')
def killed_and_reference(small_config, tools_helpers, tmp_path_factory):
    """An uninterrupted run and one SIGKILLed after its first checkpoint,
    started together (one thread each)."""
    h = tools_helpers
    root = tmp_path_factory.mktemp('interrupted')
    ref_dir, killed_dir = root / 'reference', root / 'killed'
    env = h.tool_env(threads=1)
    ref = subprocess.Popen(
        train_args(h, small_config, ref_dir), cwd=h.REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim_log = root / 'killed.log'
    with open(victim_log, 'w') as log:
        victim = subprocess.Popen(
            train_args(h, small_config, killed_dir), cwd=h.REPO_ROOT,
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # last_checkpoint is written right after the checkpoint itself;
        # kill once it names it (created is not yet written)
        deadline = time.time() + 240
        last_file = killed_dir / 'last_checkpoint'
        while not (last_file.exists() and last_file.read_text().strip()):
            assert victim.poll() is None, victim_log.read_text()[-6000:]
            assert time.time() < deadline, 'no checkpoint within 240 s'
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(60)
        ref_log, _ = ref.communicate(timeout=300)
    finally:
        for proc in (ref, victim):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert ref.returncode == 0, ref_log[-6000:]
    assert victim.returncode == -signal.SIGKILL
    assert not (killed_dir / f'iter_{MAX_ITERS}.pth').exists(), \
        'the run finished before it could be killed'
    last = (killed_dir / 'last_checkpoint').read_text().strip()
    return dict(ref_dir=ref_dir, killed_dir=killed_dir, last=last)


def test_truncated_checkpoint_names_the_newest_intact_one(
        killed_and_reference, small_config, tools_helpers):
    h = tools_helpers
    killed_dir = killed_and_reference['killed_dir']
    last = killed_and_reference['last']
    done = int(osp.basename(last)[len('iter_'):-len('.pth')])
    # the next checkpoint, cut off mid-write (as a kill during torch.save
    # leaves it)
    cut = killed_dir / f'iter_{done + CKPT_INTERVAL}.pth'
    data = open(last, 'rb').read()
    cut.write_bytes(data[:len(data) // 2])
    proc = h.run_tool(
        train_args(h, small_config, killed_dir, '--resume', cut),
        env=h.tool_env(threads=1))
    assert proc.returncode != 0
    assert 'mmretina.engine.resume.CorruptCheckpointError: cannot resume ' \
        f"from checkpoint '{cut}': truncated: {len(data) // 2} bytes, and " \
        'the zip archive has no complete central directory' in proc.stdout
    assert 'It was probably being written when the run was interrupted. ' \
        f"The newest intact checkpoint there is '{last}': resume from it " \
        f'with --resume {last}.' in proc.stdout
    assert 'Iter(train)' not in proc.stdout  # refused before training


def test_resume_after_kill_matches_uninterrupted_run(
        killed_and_reference, small_config, tools_helpers):
    h = tools_helpers
    killed_dir = killed_and_reference['killed_dir']
    last = killed_and_reference['last']
    done = int(osp.basename(last)[len('iter_'):-len('.pth')])
    # --resume without a path: work_dir/last_checkpoint, as after a crash
    proc = h.run_tool(
        train_args(h, small_config, killed_dir, '--resume'),
        env=h.tool_env(threads=1))
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert f'resumed epoch: 0, iter: {done}' in proc.stdout
    # mmengine pads the iteration to the width of max_iters: '[ 3/10]'
    assert re.search(rf'Iter\(train\) \[ *{done + 1}/{MAX_ITERS}\]',
                     proc.stdout)
    resumed = load_ckpt(killed_dir / f'iter_{MAX_ITERS}.pth')
    ref = load_ckpt(killed_and_reference['ref_dir'] / f'iter_{MAX_ITERS}.pth')
    assert resumed['meta']['iter'] == ref['meta']['iter'] == MAX_ITERS
    assert resumed['state_dict'].keys() == ref['state_dict'].keys()
    for key, value in ref['state_dict'].items():
        diff = (resumed['state_dict'][key].double() - value.double()).abs()
        assert diff.max().item() <= 1e-6, key


# ------------------------------------------------------------ NaN losses
# Imported by the training subprocess only (custom_imports), so the loss is
# registered nowhere else.
NAN_LOSS_MODULE = '''
from mmdet.models.losses import L1Loss
from mmdet.registry import MODELS
from mmengine.logging import MessageHub
from mmengine.registry import Registry

TEST_MODELS = Registry('model', parent=MODELS, scope='robustness_test')


@TEST_MODELS.register_module()
class NaNAtIterL1Loss(L1Loss):
    """L1Loss that returns NaN at (1-based) iteration ``nan_at``."""

    def __init__(self, nan_at, **kwargs):
        super().__init__(**kwargs)
        self.nan_at = nan_at

    def forward(self, *args, **kwargs):
        loss = super().forward(*args, **kwargs)
        if MessageHub.get_current_instance().get_info('iter') == \\
                self.nan_at - 1:
            loss = loss * float('nan')
        return loss
'''


def test_nan_loss_stops_training_at_that_iteration(small_config,
                                                   tools_helpers, tmp_path):
    h = tools_helpers
    (tmp_path / 'nan_loss_module.py').write_text(NAN_LOSS_MODULE)
    config = tmp_path / 'nan.py'
    config.write_text(
        f'_base_ = {small_config!r}\n'
        "custom_imports = dict(imports=['mmretina', 'nan_loss_module'], "
        'allow_failed_imports=False)\n'
        'model = dict(bbox_head=dict(loss_bbox=dict('
        "type='robustness_test.NaNAtIterL1Loss', nan_at=3, "
        'loss_weight=1.0)))\n')
    env = h.tool_env(threads=1)
    env['PYTHONPATH'] = str(tmp_path) + os.pathsep + env['PYTHONPATH']
    work_dir = tmp_path / 'work'
    proc = h.run_tool(
        train_args(h, config, work_dir, '--cfg-options',
                   'train_cfg.max_iters=4',
                   'default_hooks.checkpoint.interval=2'), env=env)
    assert proc.returncode != 0
    # mmretina.RetinaHead's own check fires first, in the forward pass;
    # tools/train.py adds the iteration and the checkpoint
    assert 'FloatingPointError: iteration 3: mmretina.RetinaHead: loss is ' \
        'not finite (loss_cls=' in proc.stdout
    assert 'loss_bbox=nan)' in proc.stdout
    assert "Training was stopped before saving; the last checkpoint, " \
        f"'{work_dir / 'iter_2.pth'}', predates this iteration and is " \
        'intact' in proc.stdout
    assert 'Iter(train) [2/4]' in proc.stdout
    assert not (work_dir / 'iter_4.pth').exists()
    ckpt = load_ckpt(work_dir / 'iter_2.pth')
    assert ckpt['meta']['iter'] == 2
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values())


def build_runner(config, work_dir, **overrides):
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(overrides)
    cfg.work_dir = str(work_dir)
    # mmengine keys the MessageHub (the loss history read below) by
    # experiment name + timestamp to the second: runners built within one
    # second would share it, so every runner gets a name of its own.
    cfg.experiment_name = f'robustness_{uuid.uuid4().hex}'
    return Runner.from_cfg(cfg)


# ------------------------------------------------------------- bad data
def losses_per_iter(runner, key):
    return runner.message_hub.get_scalar(f'train/{key}').data[0]


DATA_PIPELINE = [
    dict(type='mmretina.LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs'),
]


def test_bad_boxes_and_empty_images_train(small_config, tiny_data,
                                          tmp_path, one_thread):
    with open(osp.join(tiny_data, 'ann.json')) as f:
        coco = json.load(f)
    coco['images'] = coco['images'][:4]
    anns = [a for a in coco['annotations'] if a['image_id'] in (3, 4)]
    bad = [  # image 1: only boxes that cannot be trained on
        [10, 10, 0, 8], [10, 10, 8, -1], [float('nan'), 1, 5, 5],
        [500, 500, 10, 10]
    ]
    anns += [
        dict(id=1000 + i, image_id=1, category_id=1, bbox=b, area=1.0,
             iscrowd=0) for i, b in enumerate(bad)
    ]
    # image 2: no annotation at all; image 3: a box sticking out
    anns.append(dict(id=2000, image_id=3, category_id=2,
                     bbox=[100, 100, 60, 60], area=3600.0, iscrowd=0))
    coco['annotations'] = anns
    with open(tmp_path / 'ann.json', 'w') as f:
        json.dump(coco, f)
    dataset = dict(
        type='mmretina.CocoDataset',
        data_root=tiny_data + '/',
        ann_file=str(tmp_path / 'ann.json'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=DATA_PIPELINE)
    runner = build_runner(
        small_config, tmp_path / 'work', **{
            'train_cfg.max_iters': 2,
            'train_dataloader.dataset': dataset,
            'train_dataloader.sampler.shuffle': False,
        })
    ds = runner.train_dataloader.dataset
    assert len(ds) == 4 and sum(ds.box_report.values()) == 5
    runner.train()  # CheckFiniteLossHook: every loss finite
    # iteration 1 is images 1 and 2, both without a box: all background
    loss_bbox = losses_per_iter(runner, 'loss_bbox')
    loss_cls = losses_per_iter(runner, 'loss_cls')
    assert loss_bbox[0] == 0 and loss_cls[0] > 0
    assert loss_bbox[1] > 0


def test_thousand_boxes_and_mixed_sizes_in_one_batch(
        small_config, tmp_path, one_thread):
    import cv2
    rng = np.random.RandomState(0)
    os.makedirs(tmp_path / 'images')
    images, anns = [], []
    # 320x240 with 1000 boxes, and a 40x56 portrait image with 2
    for img_id, (w, h, n) in enumerate([(320, 240, 1000), (40, 56, 2)], 1):
        cv2.imwrite(str(tmp_path / 'images' / f'{img_id}.png'),
                    rng.randint(0, 255, (h, w, 3)).astype(np.uint8))
        images.append(dict(id=img_id, file_name=f'{img_id}.png', width=w,
                           height=h))
        for _ in range(n):
            bw, bh = rng.randint(4, min(w, 40), 2)
            x, y = rng.randint(0, w - bw), rng.randint(0, h - bh)
            anns.append(dict(id=len(anns) + 1, image_id=img_id,
                             category_id=int(rng.randint(1, 3)),
                             bbox=[int(x), int(y), int(bw), int(bh)],
                             area=float(bw * bh), iscrowd=0))
    coco = dict(images=images, annotations=anns,
                categories=[dict(id=1, name='square'),
                            dict(id=2, name='bar')])
    with open(tmp_path / 'ann.json', 'w') as f:
        json.dump(coco, f)
    runner = build_runner(
        small_config, tmp_path / 'work', **{
            'train_cfg.max_iters': 2,
            'default_hooks.checkpoint.interval': 100,
            'train_dataloader.batch_sampler': None,
            'train_dataloader.sampler.shuffle': False,
            'train_dataloader.dataset': dict(
                type='mmretina.CocoDataset',
                data_root=str(tmp_path) + '/',
                ann_file='ann.json',
                data_prefix=dict(img='images/'),
                pipeline=DATA_PIPELINE),
        })
    # both images in each batch of 2, padded to 320x256 together (no
    # AspectRatioBatchSampler to separate landscape from portrait)
    loader = runner.train_dataloader
    assert type(loader.batch_sampler).__name__ == 'BatchSampler'
    assert loader.batch_size == 2 and len(loader.dataset) == 2
    samples = [loader.dataset[i]['data_samples'] for i in range(2)]
    assert [len(s.gt_instances) for s in samples] == [1000, 2]
    assert [s.img_shape for s in samples] == [(240, 320), (56, 40)]
    runner.train()
    assert runner.iter == 2
    assert (losses_per_iter(runner, 'loss_bbox') > 0).all()
