"""INT8 keeps a trained detector's accuracy: a small detector trained here
on a synthetic COCO set of BCCD's size (364 images, 3 classes, 4-20 objects
an image at 128 px), exported, quantized by ``quantize_model`` (calibrated on
training images, checked on a held-out split) and scored with the same
CocoMetric as fp32. The issue's bound: INT8 mAP50 within 0.02 of fp32's."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch

from mmretina.testing import write_tiny_config

CLASSES = ('rbc', 'wbc', 'platelet')
SIZE = 128


def make_cells(root, num_images, seed):
    """BCCD-like images: many red cells (discs), a few large white cells,
    small platelets, on a noisy background; a COCO json under ``root``."""
    import cv2
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    images, anns = [], []
    for i in range(num_images):
        img = rng.randint(150, 200, (SIZE, SIZE, 3)).astype(np.uint8)
        img[..., 0] = rng.randint(170, 230, (SIZE, SIZE))
        kinds = [0] * rng.randint(3, 14) + [1] * rng.randint(0, 2) + \
            [2] * rng.randint(0, 4)
        for cls in kinds:
            r = {0: rng.randint(8, 13), 1: rng.randint(16, 22),
                 2: rng.randint(3, 5)}[cls]
            cx, cy = rng.randint(r, SIZE - r, 2)
            colour = {0: (120, 110, 220), 1: (180, 60, 120),
                      2: (150, 90, 160)}[cls]
            cv2.circle(img, (int(cx), int(cy)), int(r), colour, -1)
            anns.append(dict(id=len(anns) + 1, image_id=i + 1,
                             category_id=cls + 1,
                             bbox=[float(cx - r), float(cy - r),
                                   float(2 * r + 1), float(2 * r + 1)],
                             area=float((2 * r + 1)**2), iscrowd=0))
        name = f'{seed}_{i:04d}.png'
        cv2.imwrite(osp.join(root, 'images', name), img)
        images.append(dict(id=i + 1, file_name=name, width=SIZE,
                           height=SIZE))
    ann = osp.join(root, f'ann_{seed}.json')
    with open(ann, 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=[
            dict(id=k + 1, name=n) for k, n in enumerate(CLASSES)]), f)
    return ann


@pytest.fixture(scope='module')
def trained_cells(tmp_path_factory):
    """(config, checkpoint, train ann, held-out ann) of a detector trained
    for 400 iterations on 300 images (about a minute on 2 cores)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    root = tmp_path_factory.mktemp('cells')
    data = str(root / 'data')
    train_ann = make_cells(data, 300, seed=1)
    val_ann = make_cells(data, 64, seed=2)
    tiny = write_tiny_config(str(root / 'tiny.py'), data, max_iters=400,
                             ckpt_interval=400)
    config = str(root / 'cells.py')
    with open(config, 'w') as f:
        f.write(f'''_base_ = [{tiny!r}]
classes = {CLASSES!r}
model = dict(bbox_head=dict(num_classes=3, stacked_convs=2,
                            feat_channels=64, in_channels=32))
train_dataloader = dict(batch_size=4, dataset=dict(
    metainfo=dict(classes=classes), ann_file={osp.basename(train_ann)!r}))
val_dataloader = dict(dataset=dict(
    metainfo=dict(classes=classes), ann_file={osp.basename(val_ann)!r}))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={val_ann!r})
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=0.01),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=400,
         milestones=[320], gamma=0.1)]
default_hooks = dict(logger=dict(interval=100))
''')
    cfg = Config.fromfile(config)
    cfg.work_dir = str(root / 'work')
    torch.manual_seed(0)
    Runner.from_cfg(cfg).train()
    ckpt = osp.join(cfg.work_dir, 'iter_400.pth')
    assert osp.isfile(ckpt)
    return config, ckpt, train_ann, val_ann


def test_int8_within_0_02_map50_of_fp32(trained_cells, tmp_path):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    from mmdet.apis import init_detector

    from mmretina.deploy.export import export_onnx
    from mmretina.deploy.backends import build_backend
    from mmretina.deploy.quantize import evaluate_map50, quantize_model
    config, ckpt, train_ann, val_ann = trained_cells
    model = init_detector(config, ckpt, device='cpu').eval()
    fp32_onnx = str(tmp_path / 'cells.onnx')
    export_onnx(model, fp32_onnx, model.cfg, dynamic=False,
                example_size=(SIZE, SIZE))
    report = quantize_model(fp32_onnx, str(tmp_path / 'cells.int8.onnx'),
                            train_ann, num_calib=32, val_ann=val_ann,
                            max_drop=0.02, threads=2, log=lambda *a: None)
    print('\n'.join(report.lines()))  # the figures, in the test log
    # a detector that learnt something, so that the bound is not vacuous
    assert report['fp32_map50'] > 0.5, report
    assert report['written'], report.lines()
    assert report['fp32_map50'] - report['int8_map50'] <= 0.02
    # the INT8 file scores the same on a fresh session (what test.py runs)
    int8 = build_backend(str(tmp_path / 'cells.int8.onnx'), 'onnxruntime', 2)
    assert evaluate_map50(int8, val_ann)[0] == pytest.approx(
        report['int8_map50'], abs=1e-6)
