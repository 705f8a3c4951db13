"""From a DeepForest-layout torchvision RetinaNet to mmretina's tools: convert
(tools/model_converters/torchvision_to_mmretina.py), fine-tune one epoch with
the recipe configs/retinanet_r50_fpn_deepforest_finetune.py, and evaluate
with tools/test.py on the converter's config. Tiny images (128 px, which
TorchvisionResize keeps at 128) keep the ResNet-50 fast."""
import json
import os.path as osp

import torch

SIZE = 128

CHILD_CONFIG = '''
_base_ = {base!r}
load_from = {ckpt!r}
data_root = {root!r}
size = {size}
train_pipeline = [
    dict(type='mmretina.LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='mmretina.TorchvisionResize', min_size=size, max_size=size),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='mmretina.LoadImageFromFile'),
    dict(type='mmretina.TorchvisionResize', min_size=size, max_size=size),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor')),
]
metainfo = dict(classes=('tree', ))
train_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='ann.json', metainfo=metainfo,
    data_prefix=dict(img='images/'), pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='ann.json', metainfo=metainfo,
    data_prefix=dict(img='images/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'ann.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=2)  # evaluated by test.py below
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False,
                        begin=0, end=2)]
# random weights score below the recipe's 0.05: keep every box so that
# the COCO metric has predictions to evaluate
model = dict(test_cfg=dict(score_thr=0.0, max_per_img=100))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, save_best=None))
'''


def _one_class(root, tools_helpers):
    """The tiny synthetic set with every box as class 'tree'."""
    ann = tools_helpers.make_coco(root, num_images=4, size=SIZE)
    with open(ann) as f:
        coco = json.load(f)
    for a in coco['annotations']:
        a['category_id'] = 1
    coco['categories'] = [dict(id=1, name='tree')]
    with open(ann, 'w') as f:
        json.dump(coco, f)
    return ann


def _deepforest_like_weights(path):
    """A torchvision RetinaNet state dict in DeepForest's layout (v1, one
    class, FrozenBatchNorm2d: no num_batches_tracked), random weights."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from mmretina.models.converters import (mmretina_to_torchvision,
                                            torchvision_model_config)
    register_all_modules(init_default_scope=True)
    torch.manual_seed(0)
    model = MODELS.build(torchvision_model_config('v1', 1, frozen_bn=True))
    model.init_weights()
    sd = mmretina_to_torchvision(model.state_dict(), frozen_bn=True)
    torch.save({'model.' + k: v for k, v in sd.items()}, path)
    return sd


def test_convert_finetune_one_epoch_and_test(tmp_path, tools_helpers):
    from mmretina.engine.checkpoint import load_checkpoint_file
    from mmretina.models.converters import convert_torchvision_file
    h = tools_helpers
    root = str(tmp_path / 'data') + '/'
    ann = _one_class(root, h)
    tv = _deepforest_like_weights(str(tmp_path / 'deepforest_like.pt'))
    ckpt, conv_cfg = str(tmp_path / 'tree.pth'), str(tmp_path / 'tree.py')
    convert_torchvision_file(
        str(tmp_path / 'deepforest_like.pt'), ckpt, config_out=conv_cfg,
        class_names=['tree'], min_size=SIZE, max_size=SIZE)

    child = tmp_path / 'finetune.py'
    child.write_text(CHILD_CONFIG.format(
        base=osp.join(h.REPO_ROOT, 'configs',
                      'retinanet_r50_fpn_deepforest_finetune.py'),
        ckpt=ckpt, root=root, size=SIZE))
    work_dir = tmp_path / 'work'
    proc = h.python_tool('train.py', str(child), '--work-dir', work_dir)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert f'Load checkpoint from {ckpt}' in proc.stdout
    assert 'Epoch(train) [1][2/2]' in proc.stdout
    tuned = load_checkpoint_file(str(work_dir / 'epoch_1.pth'))['state_dict']
    # started from the converted weights: the frozen stem is theirs, the
    # trained head moved away from them
    assert torch.equal(tuned['backbone.conv1.weight'],
                       tv['backbone.body.conv1.weight'])
    assert torch.equal(tuned['backbone.bn1.running_var'],
                       tv['backbone.body.bn1.running_var'])
    assert not torch.equal(tuned['bbox_head.retina_cls.weight'],
                           tv['head.classification_head.cls_logits.weight'])

    # tools/test.py on the converter's own config (test set filled in)
    proc = h.python_tool(
        'test.py', conv_cfg, ckpt, '--work-dir', tmp_path / 'test_work',
        '--cfg-options', f'test_dataloader.dataset.data_root={root}',
        'test_dataloader.dataset.ann_file=ann.json',
        'model.test_cfg.score_thr=0.0',
        f'test_evaluator.ann_file={ann}')
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'coco/bbox_mAP' in proc.stdout
