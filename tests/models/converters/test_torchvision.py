"""torchvision RetinaNet -> mmretina conversion, checked against torchvision's
own outputs (``../shared/fixtures/torchvision_retinanet``: seeded weights,
anchors, head outputs and detections of torchvision 0.29.1 on two DeepForest
images), the way back, and bad inputs."""
import importlib
import importlib.util
import json
import os
import os.path as osp
import pathlib
import subprocess
import sys

import cv2
import pytest
import torch

from mmretina.models.converters import (COCO80_IDS, KeyMismatchError,
                                        convert_mmretina_file,
                                        convert_torchvision_file,
                                        load_weights_file,
                                        mmretina_to_torchvision,
                                        torchvision_to_mmretina)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
FIXTURES = osp.join(REPO_ROOT, '..', 'shared', 'fixtures',
                    'torchvision_retinanet')
TOOLS = osp.join(REPO_ROOT, 'tools', 'model_converters')

needs_fixtures = pytest.mark.skipif(
    not osp.isfile(osp.join(FIXTURES, 'make_fixtures.py')),
    reason='torchvision reference outputs not found at '
    '../shared/fixtures/torchvision_retinanet (next to the repository; CI '
    'has them)')


def _make_fixtures_module():
    spec = importlib.util.spec_from_file_location(
        'make_fixtures', osp.join(FIXTURES, 'make_fixtures.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_CACHE = {}


def reference(name):
    """(reference dict, torchvision state dict) of a fixture, the weights
    rebuilt from the seed and checked against the stored sha256."""
    if name not in _CACHE:
        mf = _make_fixtures_module()
        ref = torch.load(osp.join(FIXTURES, f'{name}.pt'), weights_only=True)
        sd = mf.make_state_dict(ref['keys'], ref['seed'])
        assert mf.sha(sd) == ref['weights_sha256']
        _CACHE[name] = (ref, sd)
    return _CACHE[name]


def run_converted(name, coco_labels='coco91', tmp_dir='/tmp'):
    """Convert the fixture, build the model from the converted config, run
    the config's test pipeline on the fixture's images (written as PNG and
    read back with mmcv, BGR) and return anchors, head outputs in
    torchvision's (A_total x K) layout and the detections."""
    key = (name, coco_labels)
    if key in _CACHE:
        return _CACHE[key]
    from mmcv.transforms import Compose
    from mmdet.registry import MODELS
    from mmengine.config import Config
    ref, sd = reference(name)
    state, cfg = torchvision_to_mmretina(
        sd, coco_labels=coco_labels,
        min_size=ref['kwargs'].get('min_size'),
        max_size=ref['kwargs'].get('max_size'))
    cfg.pop('mmretina_meta')
    cfg = Config(cfg)
    model = MODELS.build(cfg.model)
    model.load_state_dict(state, strict=True)
    model.eval()
    pipeline = Compose(cfg.test_pipeline)
    data = []
    for i, img in enumerate(ref['images']):
        path = osp.join(tmp_dir, f'{name}_{i}.png')
        cv2.imwrite(path, img.numpy()[..., ::-1])
        data.append(pipeline(dict(img_path=path, img_id=i)))
    batch = dict(inputs=[d['inputs'] for d in data],
                 data_samples=[d['data_samples'] for d in data])
    with torch.no_grad():
        batch = model.data_preprocessor(batch, False)
        cls, reg = model.bbox_head(model.extract_feat(batch['inputs']))
        metas = [s.metainfo for s in batch['data_samples']]
        dets = model.bbox_head.predict_by_feat(
            cls, reg, batch_img_metas=metas, rescale=True)
    k = cls[0].shape[1] // 9
    sizes = [c.shape[-2:] for c in cls]
    out = dict(
        input_shape=list(batch['inputs'].shape),
        img_shapes=[list(m['img_shape']) for m in metas],
        anchors=torch.cat(
            model.bbox_head.prior_generator.grid_priors(sizes, device='cpu')),
        # B x (A*K) x H x W per level -> torchvision's (sum H*W*A) x K
        cls_logits=[torch.cat([c[i].permute(1, 2, 0).reshape(-1, k)
                               for c in cls]) for i in range(len(data))],
        bbox_regression=[torch.cat([r[i].permute(1, 2, 0).reshape(-1, 4)
                                    for r in reg])
                         for i in range(len(data))],
        detections=dets)
    _CACHE[key] = out
    return out


def assert_same_detections(ours, theirs, labels_to_tv=None):
    """Same number of detections, and a one-to-one match: equal label, box
    within 1e-2 px, score within 1e-4. Greedy in torchvision's order (two
    boxes whose scores differ by 1e-7 may be listed the other way round)."""
    boxes, scores, labels = ours.bboxes, ours.scores, ours.labels
    if labels_to_tv is not None:
        labels = labels_to_tv[labels]
    assert len(boxes) == len(theirs['boxes'])
    used = torch.zeros(len(boxes), dtype=torch.bool)
    worst_box = worst_score = 0.0
    for box, score, label in zip(theirs['boxes'], theirs['scores'],
                                 theirs['labels']):
        box_err = (boxes - box).abs().max(1).values
        ok = (~used) & (labels == label) & (box_err <= 1e-2) & (
            (scores - score).abs() <= 1e-4)
        assert ok.any(), f'no match for torchvision box {box.tolist()} ' \
            f'score {float(score)} label {int(label)}'
        j = int(torch.nonzero(ok)[0])
        used[j] = True
        worst_box = max(worst_box, float(box_err[j]))
        worst_score = max(worst_score, float((scores[j] - score).abs()))
    return worst_box, worst_score


@needs_fixtures
@pytest.mark.parametrize('name', ['v1_deepforest', 'v2_coco'])
def test_converted_model_matches_torchvision(name, tmp_path, capsys):
    ref, _ = reference(name)
    out = run_converted(name, 'coco91', str(tmp_path))
    assert out['input_shape'] == ref['input_shape']
    for i, per in enumerate(ref['per_image']):
        assert out['img_shapes'][i] == per['transformed_size']
        # same anchors in the same order: the head's channels need no
        # permutation
        assert torch.equal(out['anchors'], per['anchors'])
        logit_err = (out['cls_logits'][i] - per['cls_logits']).abs().max()
        reg_err = (out['bbox_regression'][i] -
                   per['bbox_regression']).abs().max()
        assert logit_err <= 1e-4 and reg_err <= 1e-4
        box_err, score_err = assert_same_detections(out['detections'][i],
                                                    per['detections'])
        with capsys.disabled():
            print(f'\n{name} image {i}: logits {float(logit_err):.2e}, '
                  f'deltas {float(reg_err):.2e}, boxes {box_err:.2e} px, '
                  f'scores {score_err:.2e} '
                  f'({len(per["detections"]["boxes"])} detections)')


@needs_fixtures
def test_coco80_keeps_the_80_annotated_classifier_rows():
    """91 -> 80: the classifier outputs of the kept COCO ids, in mmdet's
    a * 80 + j order (the 91-output model matches torchvision's logits
    above, output channel by channel); background and N/A are gone."""
    _, sd = reference('v2_coco')
    state80, cfg80 = torchvision_to_mmretina(sd)
    state91, _ = torchvision_to_mmretina(sd, coco_labels='coco91')
    ids = torch.tensor(COCO80_IDS)
    assert len(ids) == 80 and 0 not in ids and 12 not in ids
    rows = (torch.arange(9)[:, None] * 91 + ids[None, :]).reshape(-1)
    for name in ('weight', 'bias'):
        key = f'bbox_head.retina_cls.{name}'
        assert torch.equal(state80[key], state91[key][rows])
    assert cfg80['model']['bbox_head']['num_classes'] == 80
    classes = cfg80['mmretina_meta']['dataset_meta']['classes']
    from mmdet.datasets import CocoDataset
    assert tuple(classes) == CocoDataset.METAINFO['classes']


@needs_fixtures
def test_frozen_bn_layout_and_eps():
    """A FrozenBatchNorm2d backbone (no num_batches_tracked, DeepForest's
    layout) converts to frozen BN with torchvision's eps; the weights are
    those of the BatchNorm2d layout."""
    _, sd = reference('v1_deepforest')
    frozen = {k: v for k, v in sd.items()
              if not k.endswith('num_batches_tracked')}
    state_bn, cfg_bn = torchvision_to_mmretina(sd)
    state_fr, cfg_fr = torchvision_to_mmretina(frozen)
    assert list(state_bn) == list(state_fr)
    for k in state_bn:
        assert torch.equal(state_bn[k], state_fr[k]), k
    norm_bn = cfg_bn['model']['backbone']['norm_cfg']
    norm_fr = cfg_fr['model']['backbone']['norm_cfg']
    assert norm_bn == dict(type='BN', requires_grad=True, eps=1e-5)
    assert norm_fr == dict(type='BN', requires_grad=False, eps=1e-5)
    assert cfg_fr['mmretina_meta']['torchvision']['frozen_bn']
    assert cfg_fr['model']['neck']['add_extra_convs'] == 'on_output'
    # a v1 COCO model with FrozenBN is torchvision's COCO_V1 release,
    # which torchvision runs with eps 0 (overwrite_eps)
    coco = dict(frozen)
    for name in ('weight', 'bias'):
        key = f'head.classification_head.cls_logits.{name}'
        coco[key] = torch.zeros((9 * 91, ) + tuple(sd[key].shape[1:]))
    _, cfg = torchvision_to_mmretina(coco)
    assert cfg['model']['backbone']['norm_cfg']['eps'] == 0.0
    assert cfg['model']['bbox_head']['num_classes'] == 80


@needs_fixtures
def test_legacy_torchvision_keys_convert_alike():
    """Files of torchvision < 0.13 (FPN convs without '.0', head convs as
    conv.{2i}) give the same checkpoint."""
    _, sd = reference('v1_deepforest')
    legacy = {}
    for k, v in sd.items():
        k = k.replace('inner_blocks.0.0.', 'inner_blocks.0.')
        for blocks in ('inner_blocks', 'layer_blocks'):
            for i in range(3):
                k = k.replace(f'{blocks}.{i}.0.', f'{blocks}.{i}.')
        for head in ('classification_head', 'regression_head'):
            for i in range(4):
                k = k.replace(f'{head}.conv.{i}.0.', f'{head}.conv.{2 * i}.')
        legacy[k] = v
    assert 'head.regression_head.conv.6.weight' in legacy
    new, _ = torchvision_to_mmretina(sd)
    old, _ = torchvision_to_mmretina(legacy)
    assert list(new) == list(old)
    assert all(torch.equal(new[k], old[k]) for k in new)


@needs_fixtures
@pytest.mark.parametrize('name,frozen', [('v1_deepforest', False),
                                         ('v1_deepforest', True),
                                         ('v2_coco', False)])
def test_round_trip_is_bit_exact(name, frozen, tmp_path):
    """torchvision -> mmretina checkpoint file -> torchvision file: the same
    keys, in the same order, with identical values."""
    _, sd = reference(name)
    if frozen:
        sd = {k: v for k, v in sd.items()
              if not k.endswith('num_batches_tracked')}
    src = tmp_path / 'tv.pth'
    torch.save(sd, src)
    ckpt, back = tmp_path / 'mm.pth', tmp_path / 'back.pth'
    # coco91 keeps the classifier whole, so the round trip is lossless
    convert_torchvision_file(str(src), str(ckpt), coco_labels='coco91')
    convert_mmretina_file(str(ckpt), str(back))
    again = torch.load(back, weights_only=True)
    assert list(again) == list(sd)
    for k in sd:
        assert again[k].dtype == sd[k].dtype and torch.equal(again[k], sd[k])
    # safetensors out, too
    st = tmp_path / 'back.safetensors'
    convert_mmretina_file(str(ckpt), str(st))
    again = load_weights_file(str(st))
    assert set(again) == set(sd) and all(
        torch.equal(again[k], sd[k]) for k in sd)


@needs_fixtures
def test_safetensors_with_model_prefix_and_hub_config(tmp_path):
    """DeepForest's hub layout: model.safetensors (here with the 'model.'
    prefix of its Lightning checkpoints) and config.json beside it."""
    from mmengine.config import Config
    from safetensors.torch import save_file
    _, sd = reference('v1_deepforest')
    frozen = {'model.' + k: v for k, v in sd.items()
              if not k.endswith('num_batches_tracked')}
    hub = tmp_path / 'hub'
    hub.mkdir()
    save_file(frozen, str(hub / 'model.safetensors'))
    (hub / 'config.json').write_text(json.dumps(dict(
        num_classes=1, nms_thresh=0.05, score_thresh=0.3,
        label_dict={'Tree': 0}, detections_per_img=150)))
    ckpt, cfg_file = tmp_path / 'tree.pth', tmp_path / 'tree.py'
    convert_torchvision_file(str(hub / 'model.safetensors'), str(ckpt),
                             config_out=str(cfg_file))
    saved = torch.load(ckpt, weights_only=True)
    assert saved['meta']['dataset_meta']['classes'] == ['Tree']
    direct, _ = torchvision_to_mmretina(
        {k[len('model.'):]: v for k, v in frozen.items()})
    assert all(torch.equal(saved['state_dict'][k], direct[k])
               for k in direct)
    cfg = Config.fromfile(str(cfg_file))
    test_cfg = cfg.model.test_cfg
    assert test_cfg.score_thr == 0.3
    assert test_cfg.nms.iou_threshold == 0.05
    assert test_cfg.max_per_img == 150 and test_cfg.nms_pre == 1000
    assert cfg.test_dataloader.dataset.metainfo.classes == ('Tree', )
    assert cfg.load_from == str(ckpt)
    assert cfg.test_pipeline[1] == dict(
        type='mmretina.TorchvisionResize', min_size=800, max_size=1333)


# ----------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------
@needs_fixtures
def test_another_architecture_lists_keys_by_group():
    """A Faster R-CNN-like state dict: same backbone, other head."""
    _, sd = reference('v1_deepforest')
    other = {k: v for k, v in sd.items() if not k.startswith('head.')}
    other['rpn.head.conv.0.0.weight'] = torch.zeros(256, 256, 3, 3)
    other['roi_heads.box_head.fc6.weight'] = torch.zeros(1024, 12544)
    other['head.classification_head.cls_logits.bias'] = torch.zeros(9)
    other['head.regression_head.bbox_reg.bias'] = torch.zeros(36)
    with pytest.raises(KeyMismatchError) as e:
        torchvision_to_mmretina(other, source='frcnn.pth')
    msg = str(e.value)
    assert msg.startswith('frcnn.pth: not a torchvision RetinaNet')
    assert 'keys missing' in msg and 'head (18)' in msg
    assert 'keys unexpected' in msg and 'other (2)' in msg
    assert 'rpn.head.conv.0.0.weight' in msg
    # ResNet-101 body: backbone keys unexpected
    deeper = dict(sd)
    deeper['backbone.body.layer3.6.conv1.weight'] = torch.zeros(
        256, 1024, 1, 1)
    with pytest.raises(KeyMismatchError, match=r'backbone \(1\): '
                       r'backbone\.body\.layer3\.6\.conv1\.weight'):
        torchvision_to_mmretina(deeper)


@needs_fixtures
def test_mmdet_checkpoint_given_as_torchvision_is_refused():
    _, sd = reference('v1_deepforest')
    state, _ = torchvision_to_mmretina(sd)
    with pytest.raises(KeyMismatchError, match='keys missing'):
        torchvision_to_mmretina(state)
    # ... and a torchvision state dict given as an mmretina one
    with pytest.raises(KeyMismatchError,
                       match='not a torchvision-expressible RetinaNet'):
        mmretina_to_torchvision(sd)


@needs_fixtures
def test_class_count_mismatch():
    _, sd = reference('v1_deepforest')
    with pytest.raises(ValueError, match=r'--num-classes 3 does not match '
                       r'the weights: the classifier has 1 classes'):
        torchvision_to_mmretina(sd, num_classes=3)
    with pytest.raises(ValueError, match='2 class names'):
        torchvision_to_mmretina(sd, class_names=['tree', 'bird'])
    with pytest.raises(ValueError, match='num_classes=2'):
        torchvision_to_mmretina(sd, hub_config=dict(num_classes=2))
    state, cfg = torchvision_to_mmretina(sd, num_classes=1,
                                         class_names=['bird'])
    assert cfg['mmretina_meta']['dataset_meta']['classes'] == ['bird']


@needs_fixtures
def test_arch_flag_contradicting_the_weights():
    _, sd = reference('v2_coco')
    with pytest.raises(ValueError, match='pass --arch v2|Pass --arch v2'):
        torchvision_to_mmretina(sd, arch='v1')


def test_truncated_files_are_reported(tmp_path):
    from safetensors.torch import save_file
    sd = {'backbone.body.conv1.weight': torch.randn(64, 3, 7, 7)}
    for name, save in (('w.pth', torch.save), ('w.safetensors', save_file)):
        path = tmp_path / name
        save(sd, str(path))
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        with pytest.raises(ValueError, match=rf'{name}: .*(truncated|'
                           'incomplete)'):
            load_weights_file(str(path))
    with pytest.raises(FileNotFoundError, match='no such file'):
        load_weights_file(str(tmp_path / 'absent.pth'))


class _RunsCode:
    """Unpickling this would create a file: a pickle that is not weights
    only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker), ))


def test_pickle_that_is_not_weights_only_is_refused(tmp_path):
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={'w': torch.zeros(1)},
                    extra=_RunsCode(str(marker))), path)
    with pytest.raises(ValueError, match='evil.pth: refused'):
        load_weights_file(str(path))
    assert not marker.exists()
    with pytest.raises(ValueError, match='evil.pth: refused'):
        convert_mmretina_file(str(path), str(tmp_path / 'out.pth'))
    assert not marker.exists()


def test_non_state_dict_file(tmp_path):
    path = tmp_path / 'list.pth'
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match='list.pth: holds no state dict'):
        load_weights_file(str(path))


def _tool(name):
    return importlib.import_module(f'mmretina.cli.{name}')


@needs_fixtures
def test_cli_converts_and_reports_errors(tmp_path):
    """The thin CLIs: a conversion with --num-classes and --class-names (as
    a script, in a new process), an error message with a non-zero exit, and
    the way back."""
    _, sd = reference('v1_deepforest')
    src = tmp_path / 'tv.pt'
    torch.save(sd, src)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    ckpt, cfg = tmp_path / 'mm.pth', tmp_path / 'mm.py'
    proc = subprocess.run(
        [sys.executable, osp.join(TOOLS, 'torchvision_to_mmretina.py'),
         str(src), str(ckpt), '--config', str(cfg), '--num-classes', '1',
         '--class-names', 'tree', '--score-thr', '0.25'],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ckpt.is_file() and cfg.is_file()
    assert 'score_thr=0.25' in cfg.read_text()
    with pytest.raises(SystemExit) as e:
        _tool('torchvision_to_mmretina').main(
            [str(src), str(tmp_path / 'x.pth'), '--num-classes', '2'])
    assert 'tv.pt: --num-classes 2 does not match' in str(e.value.code)
    assert not (tmp_path / 'x.pth').exists()
    back = tmp_path / 'back.pth'
    _tool('mmretina_to_torchvision').main([str(ckpt), str(back)])
    again = torch.load(back, weights_only=True)
    assert list(again) == list(sd)
    assert all(torch.equal(again[k], sd[k]) for k in sd)


def test_finetune_recipe_model_is_the_converters():
    """configs/retinanet_r50_fpn_deepforest_finetune.py spells out the model
    the converter writes for DeepForest's tree model (FrozenBN, one class,
    DeepForest's NMS IoU 0.05): one definition, checked here."""
    from mmengine.config import Config
    from mmretina.models.converters import torchvision_model_config
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs',
                                   'retinanet_r50_fpn_deepforest_finetune.py'))
    expected = torchvision_model_config('v1', 1, frozen_bn=True, bn_eps=1e-5,
                                        nms_thr=0.05)
    normal = lambda d: json.loads(json.dumps(d))  # noqa: E731 (tuples)
    assert normal(cfg.model.to_dict()) == normal(expected)
    resize = [t for t in cfg.test_pipeline
              if t['type'] == 'mmretina.TorchvisionResize']
    assert resize == [dict(type='mmretina.TorchvisionResize', min_size=800,
                           max_size=1333)]


@needs_fixtures
def test_onnx_export_uses_torchvision_strides(tmp_path, capsys):
    """A converted v1 model exported to ONNX at 288 x 352 (neither side a
    multiple of 128: torchvision's P6 / P7 strides are 288 // 5 = 57 and
    288 // 3 = 96 down, 352 // 6 = 58 and 352 // 3 = 117 across, not 64 and
    128) gives onnxruntime detections equal to the PyTorch model's."""
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.config import Config

    from mmretina.deploy.export import export_onnx
    ref, sd = reference('v1_deepforest')
    state, cfg = torchvision_to_mmretina(sd, coco_labels='coco91')
    cfg.pop('mmretina_meta')
    cfg = Config(cfg)
    model = MODELS.build(cfg.model)
    model.load_state_dict(state, strict=True)
    model.eval()
    # keep every detection that survives NMS (not the 300 best, which on
    # these seeded weights all come from P3-P5): P6 / P7 boxes are among
    # them, and their centres are only right with torchvision's strides
    test_cfg = dict(cfg.model.test_cfg, max_per_img=5000)
    height, width = 288, 352
    rgb = ref['images'][0].numpy()
    bgr = cv2.resize(rgb, (width, height),
                     interpolation=cv2.INTER_AREA)[..., ::-1].copy()
    sample = DetDataSample(metainfo=dict(
        img_shape=(height, width), ori_shape=(height, width),
        pad_shape=(height, width), scale_factor=(1.0, 1.0)))
    batch = dict(inputs=[torch.from_numpy(bgr).permute(2, 0, 1)],
                 data_samples=[sample])
    with torch.no_grad():
        batch = model.data_preprocessor(batch, False)
        assert tuple(batch['inputs'].shape[-2:]) == (height, width)
        feats = model.extract_feat(batch['inputs'])
        cls, reg = model.bbox_head(feats)
        sizes = [tuple(c.shape[-2:]) for c in cls]
        ours = model.bbox_head.predict_by_feat(
            cls, reg, batch_img_metas=[sample.metainfo], cfg=test_cfg,
            rescale=True)[0]
    strides = model.bbox_head.prior_generator.level_strides(sizes)
    assert strides[3:] == [(58, 57), (117, 96)]

    onnx_file = export_onnx(model, str(tmp_path / 'tv.onnx'), cfg,
                            dynamic=False, example_size=(height, width),
                            test_cfg=test_cfg)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_file, sess_options=opts,
                                   providers=['CPUExecutionProvider'])
    image = torch.from_numpy(bgr).permute(2, 0, 1)[None].float().numpy()
    info = torch.tensor([[height, width, 1.0, 1.0]]).numpy()
    dets, scores, labels, num = session.run(
        None, dict(image=image, img_info=info))
    n = int(num[0])
    theirs = dict(boxes=torch.from_numpy(dets[0, :n]),
                  scores=torch.from_numpy(scores[0, :n]),
                  labels=torch.from_numpy(labels[0, :n]).long())
    assert len(ours) > 300
    box_err, score_err = assert_same_detections(ours, theirs)
    with capsys.disabled():
        print(f'\nONNX {width}x{height}, strides {strides}: {n} detections, '
              f'boxes {box_err:.2e} px, scores {score_err:.2e}')


@needs_fixtures
def test_converted_model_tiled_raster_to_geopackage(tmp_path):
    """A converted v1 model through InferenceRun (tools/infer.py --tile):
    a GeoTIFF read window by window gives a GeoPackage with the detections
    of the in-memory tiled path on the same pixels."""
    pytest.importorskip('rasterio')
    geopandas = pytest.importorskip('geopandas')
    import numpy as np
    import rasterio
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from rasterio.transform import from_origin

    from mmretina.deploy.pytorch import PytorchBackend
    from mmretina.inference.tiled import TiledInferencer
    from mmretina.inference.run import InferenceRun
    ref, sd = reference('v1_deepforest')
    # tiles of 160 px are not resized (torchvision's resize to min_size)
    state, cfg = torchvision_to_mmretina(sd, min_size=160, max_size=1333)
    cfg.pop('mmretina_meta')
    cfg = Config(cfg)
    model = MODELS.build(cfg.model)
    model.load_state_dict(state, strict=True)
    model.eval()
    model.cfg = cfg
    rgb = ref['images'][0].numpy()[:260, :300]
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    tif = str(tmp_path / 'part.tif')
    with rasterio.open(tif, 'w', driver='GTiff', width=300, height=260,
                       count=3, dtype='uint8', crs='EPSG:32617',
                       transform=from_origin(404211.9, 3285142.9, 0.1, 0.1),
                       tiled=True, blockxsize=128, blockysize=128) as ds:
        ds.write(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    inf = TiledInferencer(PytorchBackend(model), tile=160, overlap=0.25,
                          batch_size=4, progress=False)
    expected = inf(bgr)
    run = InferenceRun(inf, classes=('tree', ),
                       out_dir=str(tmp_path / 'out'), score_thr=0.05,
                       log=lambda line: None)
    run.run([tif])
    gdf = geopandas.read_file(tmp_path / 'out' / 'part.gpkg')
    keep = expected.scores >= 0.05
    assert len(gdf) == int(keep.sum()) > 20
    np.testing.assert_allclose(gdf[['x1', 'y1', 'x2', 'y2']].to_numpy(),
                               expected.bboxes[keep].numpy(), rtol=0,
                               atol=1e-4)
    np.testing.assert_allclose(gdf['score'].to_numpy(),
                               expected.scores[keep].numpy(), rtol=0,
                               atol=1e-6)
    assert gdf.crs.to_epsg() == 32617
