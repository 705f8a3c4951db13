"""Exported models scored like checkpoints (tools/test.py MODEL.onnx
--backend ...) and the checks that refuse files mmretina cannot run."""
import glob
import json
import os
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest

from mmretina.deploy.backends import build_backend, check_exported_model

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run_test_tool(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'test.py'), *map(str, args)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=600)
    return proc


def metrics_of(work_dir):
    runs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')),
                  key=osp.getmtime)
    assert runs, f'no metrics json under {work_dir}'
    with open(runs[-1]) as f:
        return json.load(f)


def test_onnx_scored_with_the_checkpoints_metrics(tiny_export, tmp_path):
    """The same CocoMetric lines for the checkpoint and its fp32 export,
    and the same detections, image by image."""
    cfg, ckpt, onnx_file = (tiny_export['config'], tiny_export['checkpoint'],
                            tiny_export['onnx'])
    ref = run_test_tool(cfg, ckpt, '--work-dir', tmp_path / 'pt', '--out',
                        tmp_path / 'pt.pkl')
    assert ref.returncode == 0, ref.stdout[-3000:]
    got = run_test_tool(cfg, onnx_file, '--backend', 'onnxruntime',
                        '--threads', '1', '--work-dir', tmp_path / 'ort',
                        '--out', tmp_path / 'ort.pkl')
    assert got.returncode == 0, got.stdout[-3000:]
    m_ref, m_got = metrics_of(tmp_path / 'pt'), metrics_of(tmp_path / 'ort')
    keys = [k for k in m_ref if k.startswith('coco/')]
    assert len(keys) == 6  # mAP, mAP_50, _75, _s, _m, _l
    for k in keys:
        assert m_got[k] == pytest.approx(m_ref[k], abs=1e-3), k
    with open(tmp_path / 'pt.pkl', 'rb') as f:
        p_ref = pickle.load(f)
    with open(tmp_path / 'ort.pkl', 'rb') as f:
        p_got = pickle.load(f)
    assert len(p_ref) == len(p_got) == 6
    total = 0
    for r, g in zip(p_ref, p_got):
        assert r['img_id'] == g['img_id']
        rb, gb = r['pred_instances']['bboxes'], g['pred_instances']['bboxes']
        assert rb.shape == gb.shape
        total += len(rb)
        if len(rb):
            assert float((rb - gb).abs().max()) < 1e-2
            assert float((r['pred_instances']['scores'] -
                          g['pred_instances']['scores']).abs().max()) < 1e-4
    assert total >= 6 * 50  # the raised bias: the comparison is not vacuous


def test_exported_detector_in_process(tiny_export):
    """ExportedDetector.test_step on a dataloader batch of 2 images (the
    static graph takes one at a time) returns DetDataSamples."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmretina.deploy.backends import ExportedDetector
    cfg = Config.fromfile(tiny_export['config'])
    loader = Runner.build_dataloader(cfg.test_dataloader)
    batch = next(iter(loader))
    assert len(batch['inputs']) == 2
    model = ExportedDetector(tiny_export['onnx'], num_threads=1)
    out = model.test_step(batch)
    ref = tiny_export['model'].test_step(batch)
    for o, r in zip(out, ref):
        assert len(o.pred_instances) == len(r.pred_instances) > 0
    with pytest.raises(RuntimeError, match='exported model'):
        model(batch['inputs'], batch['data_samples'], mode='loss')


def test_openvino_backend_matches_onnxruntime(tiny_export):
    pytest.importorskip('openvino')
    import mmcv
    img = mmcv.imread(osp.join(tiny_export['data_root'], 'images',
                               '0000.png'))
    ort = build_backend(tiny_export['onnx'], 'onnxruntime', 1)([img])[0]
    ov = build_backend(tiny_export['onnx'], 'openvino', 1)([img])[0]
    assert len(ort) == len(ov) > 0
    np.testing.assert_allclose(ov.scores.numpy(), ort.scores.numpy(),
                               atol=1e-3)
    assert float((ov.bboxes - ort.bboxes).abs().max()) < 0.05


def test_openvino_runs_the_float32_model_in_float32(tiny_export):
    """On a CPU with native bf16 (AVX512_BF16, AMX) OpenVINO's default is
    bf16 inference, which moved scores by 1.5e-2 on an AMD EPYC with
    avx512_bf16; the session asks for f32."""
    ov = pytest.importorskip('openvino')
    from mmretina.deploy.backends import OpenVINOSession
    session = OpenVINOSession(tiny_export['onnx'], 1)
    assert session.compiled.get_property(
        'INFERENCE_PRECISION_HINT') == ov.Type.f32


# ------------------------------------------------------------- bad input
def _edited(src, dst, edit):
    import onnx
    model = onnx.load(src)
    edit(model)
    onnx.save(model, str(dst))
    return str(dst)


def test_foreign_onnx_names_what_is_missing(tiny_export, tmp_path):
    def drop_meta(model):
        keep = [p for p in model.metadata_props
                if p.key not in ('mmretina_format', 'classes')]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
        model.graph.output[3].name = 'count'
    bad = _edited(tiny_export['onnx'], tmp_path / 'foreign.onnx', drop_meta)
    with pytest.raises(ValueError) as e:
        check_exported_model(bad)
    msg = str(e.value)
    assert 'foreign.onnx is not an mmretina export' in msg
    assert 'mmretina_format, classes' in msg and 'num_dets' in msg
    (tmp_path / 'junk.onnx').write_bytes(b'not a protobuf at all')
    with pytest.raises(ValueError, match='junk.onnx is not an ONNX model'):
        check_exported_model(str(tmp_path / 'junk.onnx'))
    proc = run_test_tool(tiny_export['config'], bad, '--work-dir',
                         tmp_path / 'w')
    assert proc.returncode != 0
    assert 'is not an mmretina export' in proc.stdout


def test_low_opset_and_dynamic_shape_refused(tiny_export, tmp_path):
    def opset17(model):
        for o in model.opset_import:
            if o.domain in ('', 'ai.onnx'):
                o.version = 17
    old = _edited(tiny_export['onnx'], tmp_path / 'old.onnx', opset17)
    with pytest.raises(ValueError, match='opset 17; mmretina needs opset'):
        check_exported_model(old)

    def dynamic(model):
        dim = model.graph.input[0].type.tensor_type.shape.dim
        dim[2].dim_param = 'height'
        dim[3].dim_param = 'width'
    dyn = _edited(tiny_export['onnx'], tmp_path / 'dyn.onnx', dynamic)
    check_exported_model(dyn)  # fine where dynamic shapes are fine
    with pytest.raises(ValueError, match=r"dynamic input dimensions \['H', "
                       r"'W'\].*re-export without --dynamic"):
        check_exported_model(dyn, static=True)


def test_use_exported_model_drops_ema_hook(tiny_export):
    """The DeepForest config's EMAHook deep-copies the model (a runtime
    session cannot be copied): it is removed, the other hooks kept."""
    from mmengine.config import Config
    from mmretina.deploy.backends import use_exported_model
    cfg = Config.fromfile(osp.join(REPO, 'configs',
                                   'retinanet_r18_fpn_deepforest.py'))
    assert 'EMAHook' in [h['type'] for h in cfg.custom_hooks]
    before = [h['type'] for h in cfg.custom_hooks if h['type'] != 'EMAHook']
    cfg.load_from = 'some.pth'
    use_exported_model(cfg, tiny_export['onnx'], 'onnxruntime', 1)
    assert [h['type'] for h in cfg.custom_hooks] == before
    assert cfg.model['type'] == 'mmretina.ExportedDetector'
    assert cfg.load_from is None


def test_tiled_evaluation_of_an_export(tiny_export, tmp_path):
    """tools/test.py MODEL.onnx --tile: window by window with the runtime,
    the same metrics as the checkpoint window by window (one 128-px window
    per image: the static graph's size)."""
    args = ('--tile', 128, '--tile-batch', 1)
    ref = run_test_tool(tiny_export['config'], tiny_export['checkpoint'],
                        *args, '--device', 'cpu')
    got = run_test_tool(tiny_export['config'], tiny_export['onnx'], *args,
                        '--threads', '1')
    assert ref.returncode == 0, ref.stdout[-3000:]
    assert got.returncode == 0, got.stdout[-3000:]
    line = [ln for ln in ref.stdout.splitlines()
            if ln.startswith('tiled evaluation')]
    assert line and 'coco/bbox_mAP_50' in line[0]
    assert line == [ln for ln in got.stdout.splitlines()
                    if ln.startswith('tiled evaluation')]
