"""Fixtures for the deployment tests: a tiny synthetic COCO set and config
(mmretina.testing), a checkpoint of its detector with random weights and a
raised classifier bias (many detections, so comparisons are not vacuous),
and that checkpoint exported to a static ONNX graph."""
import os.path as osp

import pytest
import torch

from mmretina.testing import IMG_SIZE, make_coco, write_tiny_config


@pytest.fixture(scope='session')
def tiny_export(tmp_path_factory):
    """dict(config, checkpoint, onnx, data_root): the tiny detector as a
    checkpoint and as a static 1 x 3 x 128 x 128 ONNX export."""
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    from mmdet.apis import init_detector
    from mmretina.deploy.export import export_onnx
    root = tmp_path_factory.mktemp('deploy_tiny')
    data_root = str(root / 'data')
    make_coco(data_root, num_images=6)
    config = write_tiny_config(str(root / 'tiny.py'), data_root)
    torch.manual_seed(0)
    model = init_detector(config, None, device='cpu')
    with torch.no_grad():
        model.bbox_head.retina_cls.bias.fill_(-1.0)
    model.dataset_meta = dict(classes=('square', 'bar'))
    ckpt = str(root / 'random.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=model.dataset_meta)), ckpt)
    onnx_file = str(root / 'export' / 'tiny.onnx')
    export_onnx(model.eval(), onnx_file, model.cfg, dynamic=False,
                example_size=(IMG_SIZE, IMG_SIZE))
    assert osp.isfile(onnx_file)
    return dict(config=config, checkpoint=ckpt, onnx=onnx_file,
                data_root=data_root, model=model)
