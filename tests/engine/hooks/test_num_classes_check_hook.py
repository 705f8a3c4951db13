"""mmretina.NumClassesCheckHook: a head whose num_classes differs from the
training set's classes stops before the first iteration, naming both numbers
and where to set them; matching numbers train.

The RetinaNet runs use a real mmengine Runner on a tiny one-class COCO set
written by the test (4 images of 64x64) and a ResNet-18 RetinaNet with 16
channels, built from the repository's configs (whose default runtime lists
the hook); the unit tests use a toy model.
"""
import json
import os.path as osp
import uuid

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmretina.engine.hooks import NumClassesCheckHook
from mmretina.engine.hooks.num_classes_check_hook import \
    num_classes_mismatches

# the Runners built here leave mmengine's current scope and logger alone
pytestmark = pytest.mark.usefixtures('runner_globals_kept')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
SIZE = 64


def make_one_class_coco(root):
    import cv2
    rng = np.random.RandomState(0)
    (root / 'images').mkdir()
    images, anns = [], []
    for i in range(4):
        img = rng.randint(0, 60, (SIZE, SIZE, 3)).astype(np.uint8)
        x, y = rng.randint(0, 30, 2)
        cv2.rectangle(img, (int(x), int(y)), (int(x) + 23, int(y) + 23),
                      (255, 80, 80), -1)
        cv2.imwrite(str(root / 'images' / f'{i}.png'), img)
        images.append(dict(id=i + 1, file_name=f'{i}.png', width=SIZE,
                           height=SIZE))
        anns.append(dict(id=i + 1, image_id=i + 1, category_id=1,
                         bbox=[float(x), float(y), 24., 24.], area=576.,
                         iscrowd=0))
    with open(root / 'ann.json', 'w') as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=1, name='tree')]), f)


def tiny_cfg(root, num_classes, max_iters=1):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'retinanet_r50_fpn.py'))
    pipeline = [
        dict(type='mmretina.LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(SIZE, SIZE), keep_ratio=True),
        dict(type='PackDetInputs'),
    ]
    cfg.merge_from_dict(dict(
        model=dict(
            backbone=dict(depth=18, base_channels=16, stem_channels=16,
                          init_cfg=None, frozen_stages=-1),
            neck=dict(in_channels=[16, 32, 64, 128], out_channels=16),
            bbox_head=dict(num_classes=num_classes, in_channels=16,
                           feat_channels=16, stacked_convs=1)),
        train_dataloader=dict(
            batch_size=2, num_workers=0, persistent_workers=False,
            dataset=dict(
                type='mmretina.CocoDataset', data_root=str(root) + '/',
                ann_file='ann.json', data_prefix=dict(img='images/'),
                metainfo=dict(classes=('tree', )), pipeline=pipeline)),
        train_cfg=dict(max_iters=max_iters, val_interval=1000),
        param_scheduler=[],
        default_hooks=dict(checkpoint=dict(interval=1000)),
    ))
    cfg.val_dataloader = cfg.test_dataloader = None
    cfg.val_cfg = cfg.test_cfg = cfg.val_evaluator = cfg.test_evaluator = None
    cfg.work_dir = str(root / 'work')
    cfg.experiment_name = f'numcls_{uuid.uuid4().hex[:8]}'
    cfg.log_level = 'WARNING'
    return cfg


@pytest.fixture
def one_class_data(tmp_path):
    make_one_class_coco(tmp_path)
    return tmp_path


def test_default_runtime_lists_the_hook():
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_',
                                   'default_runtime.py'))
    # in default_hooks (a dict merged key by key), so that a config writing
    # its own custom_hooks list keeps it
    assert cfg.default_hooks.check_num_classes == dict(
        type='mmretina.NumClassesCheckHook')


def test_retinanet_num_classes_3_on_one_class_data_stops(one_class_data):
    runner = Runner.from_cfg(tiny_cfg(one_class_data, num_classes=3))
    with pytest.raises(ValueError) as exc:
        runner.train()
    msg = str(exc.value)
    assert msg.startswith('model.bbox_head.num_classes=3 (RetinaHead) but '
                          'train_dataloader.dataset (CocoDataset) has 1 '
                          "class (metainfo['classes'] = ('tree',)).")
    assert 'Set model.bbox_head.num_classes=1 in the config' in msg
    assert 'metainfo=dict(classes=(...))' in msg
    assert 'before the first iteration' in msg
    assert runner.iter == 0


def test_retinanet_matching_num_classes_trains(one_class_data):
    runner = Runner.from_cfg(tiny_cfg(one_class_data, num_classes=1,
                                      max_iters=1))
    runner.train()
    assert runner.iter == 1
    assert any(isinstance(h, NumClassesCheckHook) for h in runner.hooks)


# ------------------------------------------------------------ toy runner
class Head(nn.Module):

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(2, 1)


class ToyDetector(BaseModel):

    def __init__(self, num_classes, rpn_classes=1):
        super().__init__()
        self.bbox_head = Head(num_classes)
        self.rpn_head = Head(rpn_classes)  # excluded, as in mmdet

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.bbox_head.fc(inputs)
        if mode != 'loss':
            return out
        return dict(loss=((out - labels)**2).mean())


class ToyDataset(Dataset):

    def __init__(self, classes):
        self.metainfo = {} if classes is None else dict(classes=classes)

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([i / 4, 1.0]),
                    labels=torch.tensor([0.5]))


def toy_train(tmp_path, num_classes, classes, hooks=None):
    runner = Runner(
        model=ToyDetector(num_classes),
        work_dir=str(tmp_path),
        experiment_name=f'numcls_toy_{uuid.uuid4().hex[:8]}',
        default_scope='mmdet',
        train_dataloader=dict(
            dataset=ToyDataset(classes),
            sampler=dict(type='InfiniteSampler', shuffle=False),
            batch_size=2, num_workers=0,
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1000, by_epoch=False)),
        custom_hooks=hooks or [dict(type='mmretina.NumClassesCheckHook')],
        log_level='WARNING')
    runner.train()
    return runner


def test_too_few_outputs_is_an_error_too(tmp_path):
    with pytest.raises(ValueError, match=r'^model.bbox_head.num_classes=1 '
                       r"\(Head\) but .* has 2 classes .*'a', 'b'"):
        toy_train(tmp_path, 1, ('a', 'b'))


def test_listed_twice_checks_once_and_trains(tmp_path):
    hooks = [dict(type='mmretina.NumClassesCheckHook')] * 2
    runner = toy_train(tmp_path, 2, ('a', 'b'), hooks=hooks)
    assert runner.iter == 2
    assert sum(isinstance(h, NumClassesCheckHook) for h in runner.hooks) == 2


def test_classes_as_a_string_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"is the string 'tree', not a "
                       r"tuple of names: write classes=\('tree', \)"):
        toy_train(tmp_path, 1, 'tree')


def test_dataset_without_classes_warns_and_trains(tmp_path):
    runner = toy_train(tmp_path, 3, None)
    assert runner.iter == 2


def test_wrapped_model_is_unwrapped():
    from mmengine.model import MMDistributedDataParallel

    class FakeDDP(MMDistributedDataParallel):
        # a real DDP needs a process group; only ``.module`` matters here

        def __init__(self, module):
            nn.Module.__init__(self)
            self.module = module

    wrapped = FakeDDP(ToyDetector(3))
    assert num_classes_mismatches(wrapped, ('a', )) == [
        'model.bbox_head.num_classes=3 (Head)'
    ]
    assert num_classes_mismatches(wrapped, ('a', 'b', 'c')) == []


def test_long_class_lists_are_shortened(tmp_path):
    classes = tuple(f'c{i}' for i in range(80))
    with pytest.raises(ValueError) as exc:
        toy_train(tmp_path, 1, classes)
    assert "has 80 classes (metainfo['classes'] = ('c0', " in str(exc.value)
    assert "'c9', ...))" in str(exc.value)
