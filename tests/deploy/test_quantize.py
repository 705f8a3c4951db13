"""INT8 quantization of an export: calibration input checks, the QDQ model
written with the export's metadata and run by both runtimes, and the
refusal (nothing written) when the measured drop exceeds --max-drop."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from mmretina.deploy.quantize import (calibration_images, conv_groups,
                                      quantize_model)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_calibration_folder_without_images(tmp_path):
    (tmp_path / 'notes.txt').write_text('no images here')
    with pytest.raises(ValueError, match=f'--calib-data {tmp_path}: the '
                       'folder holds no image'):
        calibration_images(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='no such file or folder'):
        calibration_images(str(tmp_path / 'missing'))


def test_calibration_from_coco_json_spreads_images(tiny_export):
    ann = osp.join(tiny_export['data_root'], 'ann.json')
    paths = calibration_images(ann, num=3)
    assert [osp.basename(p) for p in paths] == [
        '0000.png', '0002.png', '0005.png']
    assert all(osp.isfile(p) for p in paths)


def test_quantize_writes_int8_with_metadata(tiny_export, tmp_path):
    import onnx
    from mmretina.deploy.backends import build_backend
    import mmcv
    out = str(tmp_path / 'new_dir' / 'tiny.int8.onnx')
    data = tiny_export['data_root']
    report = quantize_model(
        tiny_export['onnx'], out, osp.join(data, 'images'), num_calib=4,
        val_ann=osp.join(data, 'ann.json'), max_drop=1.0, threads=1,
        exclude=['bbox_head.retina_cls'], log=lambda *a: None)
    assert report['written'] and osp.isfile(out)
    assert report['excluded'] == {'bbox_head.retina_cls':
                                  'asked (--exclude)'}
    model = onnx.load(out)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count('QuantizeLinear') >= 10
    assert {'NonMaxSuppression', 'TopK', 'Sigmoid'} <= set(ops)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta['mmretina_format'] == 'retinanet-v1'
    assert meta['mmretina_precision'] == 'int8-qdq'
    # the excluded conv reads float input: no DequantizeLinear feeds it
    cls_nodes = conv_groups(onnx.load(tiny_export['onnx']))[
        'bbox_head.retina_cls']
    produced_by = {o: n.op_type for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.name in cls_nodes:
            assert produced_by.get(n.input[1]) != 'DequantizeLinear'
    img = mmcv.imread(osp.join(data, 'images', '0001.png'))
    for backend in ('onnxruntime', 'openvino'):
        if backend == 'openvino':
            pytest.importorskip('openvino')
        dets = build_backend(out, backend, 1)([img])[0]
        assert len(dets) > 0 and dets.bboxes.shape[1] == 4


def test_quantize_refuses_above_max_drop(tiny_export, tmp_path):
    """An impossible --max-drop (INT8 would have to beat fp32 by 1.0
    mAP50): every group is tried in float, nothing is written, and the
    tool exits 1 with a message naming the file."""
    data = tiny_export['data_root']
    out = tmp_path / 'refused.int8.onnx'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'deployment',
                                  'quantize.py'), tiny_export['config'],
         tiny_export['onnx'], '--calib-data', osp.join(data, 'ann.json'),
         '--num-calib', '2', '--val-ann', osp.join(data, 'ann.json'),
         '--max-drop', '-1', '--out', str(out), '--threads', '1'],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=900)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert f'{out} NOT written' in proc.stdout
    assert 'sensitivity: bbox_head.retina_cls' in proc.stdout
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.onnx')]


def test_quantize_refuses_dynamic_models(tiny_export, tmp_path):
    import onnx
    model = onnx.load(tiny_export['onnx'])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = 'batch'
    dyn = str(tmp_path / 'dyn.onnx')
    onnx.save(model, dyn)
    with pytest.raises(ValueError, match=r"dynamic input dimensions \['N'\]"):
        quantize_model(dyn, str(tmp_path / 'q.onnx'),
                       osp.join(tiny_export['data_root'], 'images'))
    assert not (tmp_path / 'q.onnx').exists()
