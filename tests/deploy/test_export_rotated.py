"""ONNX export of an oriented RetinaNet (mmrotate's own
``rotated-retinanet-rbox-le90`` / ``-oc`` DOTA configs, shrunk to ResNet-18
with seeded random weights; mmdet's RetinaHead, and mmretina's RetinaHead
and FakeRotatedAnchorGenerator swapped in): the rotated decode in the
graph, mmcv's
``nms_rotated`` after it in the runtime, and onnxruntime's (and OpenVINO's)
detections equal to PyTorch's detection by detection on real aerial images.

Tolerances (float32; the random boxes reach ~5000 px): centres, widths
and heights 1e-3 px + 1e-5 of the box's longer side, angles 1e-5 rad
compared modulo pi (the same rectangle: a box at the edge of le90's
[-pi/2, pi/2) may come out at either end), scores 1e-5; counts and labels
exact. OpenVINO: 0.05 px + 1e-4, 1e-3 rad, 1e-3 (its kernels round
differently, as for axis-aligned exports)."""
import math
import os.path as osp

import mmcv
import pytest
import torch

pytest.importorskip('mmrotate')
pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

from mmretina.deploy.pytorch import PytorchBackend  # noqa: E402

CLASSES = ('plane', 'ship', 'small-vehicle')
SIZE = 256  # the test pipeline's resize (DOTA's is 1024)


def config_text(angle_version: str) -> str:
    """mmrotate's own config, shrunk: ResNet-18 without pretrained weights,
    a 64-channel FPN and head with two stacked convs, three classes, a
    256-px test resize; the rotated parts (anchors, coder, nms_rotated)
    are the config's."""
    import mmrotate
    base = osp.join(osp.dirname(mmrotate.__file__), '.mim', 'configs',
                    'rotated_retinanet',
                    f'rotated-retinanet-rbox-{angle_version}_r50_fpn_1x_'
                    'dota.py')
    assert osp.isfile(base), base
    return f'''_base_ = {base!r}
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    bbox_head=dict(num_classes={len(CLASSES)}, in_channels=64,
                   feat_channels=64, stacked_convs=2),
    test_cfg=dict(nms_pre=300, max_per_img=200))
test_pipeline = [
    dict(type='mmdet.LoadImageFromFile'),
    dict(type='mmdet.Resize', scale=({SIZE}, {SIZE}), keep_ratio=True),
    dict(type='mmdet.PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
'''


def build_rotated(config: str, seed: int = 0, bias: float = -1.5,
                  mmretina_types: bool = False, **coder):
    """The config's detector (built in mmrotate's scope, which is left
    afterwards) with seeded random weights (PyTorch's initialisation of
    each layer, the regression and classification convs wider, N(0, 0.05),
    than RetinaHead's N(0, 0.01)) so that boxes move,
    stretch and turn away from their anchors, and the classifier bias at
    ``bias`` (hundreds of candidates). ``mmretina_types``: mmretina's
    ``RetinaHead`` and ``FakeRotatedAnchorGenerator`` in place of mmdet's
    and mmrotate's; ``coder`` overrides bbox_coder arguments."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmretina.utils.mmrotate import require_mmrotate
    require_mmrotate('the rotated export tests')
    from mmrotate.registry import MODELS
    cfg = Config.fromfile(config)
    cfg.model.bbox_head.bbox_coder.update(coder)
    if mmretina_types:
        cfg.model.bbox_head.type = 'mmretina.RetinaHead'
        cfg.model.bbox_head.anchor_generator.type = \
            'mmretina.FakeRotatedAnchorGenerator'
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmrotate'):
        model = MODELS.build(cfg.model)
    with torch.no_grad():
        model.bbox_head.retina_reg.weight.normal_(0, 0.05)
        model.bbox_head.retina_cls.weight.normal_(0, 0.05)
        model.bbox_head.retina_cls.bias.fill_(bias)
    model.cfg = cfg
    model.dataset_meta = dict(classes=CLASSES)
    return model.eval()


def write_rotated(root, angle_version: str, mmretina_types: bool = False):
    """(config, checkpoint) files of :func:`build_rotated`, and the
    model."""
    config = str(root / f'rotated_{angle_version}.py')
    with open(config, 'w') as f:
        f.write(config_text(angle_version))
    model = build_rotated(config, mmretina_types=mmretina_types)
    ckpt = str(root / f'rotated_{angle_version}.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=model.dataset_meta)), ckpt)
    return config, ckpt, model


def match_rotated(ref, got):
    """Greedy one-to-one matching of two images' detections (same label,
    nearest box). Same count and labels required.

    Returns:
        Tensor: (M, 4) per matched pair: the largest centre / size
        difference (px), the box's longer side (px), the angle difference
        (rad, modulo pi) and the score difference.
    """
    from mmdet.structures.bbox import get_box_tensor
    rb, gb = get_box_tensor(ref.bboxes), get_box_tensor(got.bboxes)
    assert rb.shape == gb.shape and gb.shape[-1] == 5, (rb.shape, gb.shape)
    assert sorted(ref.labels.tolist()) == sorted(got.labels.tolist())
    used = torch.zeros(len(rb), dtype=torch.bool)
    rows = []
    for i in range(len(gb)):
        d = (rb - gb[i]).abs()
        da = ((d[:, 4] + math.pi / 2) % math.pi - math.pi / 2).abs()
        cost = d[:, :4].max(1).values + da * 1e3 + 1e9 * (
            used | (ref.labels != got.labels[i])).float()
        j = int(cost.argmin())
        used[j] = True
        rows.append([float(d[j, :4].max()), float(rb[j, 2:4].max()),
                     float(da[j]),
                     float((ref.scores[j] - got.scores[i]).abs())])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


def assert_same_detections(ref, got, what, min_count=20, px=1e-3,
                           rel=1e-5, rad=1e-5, score=1e-5):
    """Same count and labels; per detection, centre / size within ``px``
    + ``rel`` x its longer side (float32 keeps ~7 digits: a 4000-px box
    moves by 1e-3 px when a feature moves by 1e-7 of itself), angle within
    ``rad``, score within ``score``."""
    assert len(ref) == len(got), f'{what}: {len(ref)} vs {len(got)}'
    assert len(ref) >= min_count, f'{what}: only {len(ref)} detections'
    m = match_rotated(ref, got)
    print(f'{what}: {len(got)} detections, max |centre/size diff| '
          f'{m[:, 0].max():.1e} px ({(m[:, 0] / m[:, 1]).max():.1e} of the '
          f'box), max |angle diff| {m[:, 2].max():.1e} rad, max |score '
          f'diff| {m[:, 3].max():.1e}')
    assert bool((m[:, 0] <= px + rel * m[:, 1]).all())
    assert bool((m[:, 2] <= rad).all()) and bool((m[:, 3] <= score).all())
    return m


# ------------------------------------------------- the graph's arithmetic
def graph_inputs(model, imgs):
    """``image`` / ``img_info`` of the graph for ``imgs`` (the model's test
    pipeline, padded as OrtBackend.pack pads)."""
    from mmretina.deploy.export import pad_pixel_value
    backend = PytorchBackend(model)
    data = [backend.pipeline(dict(img=img, img_id=0)) for img in imgs]
    div = model.data_preprocessor.pad_size_divisor
    shapes = [d['inputs'].shape[1:] for d in data]
    pad_h = max(-(-h // div) * div for h, _ in shapes)
    pad_w = max(-(-w // div) * div for _, w in shapes)
    image = torch.empty(len(imgs), 3, pad_h, pad_w)
    image[:] = torch.tensor(pad_pixel_value(model.data_preprocessor))[
        None, :, None, None]
    info = torch.zeros(len(imgs), 4)
    for i, d in enumerate(data):
        h, w = shapes[i]
        image[i, :, :h, :w] = d['inputs'].float()
        sw, sh = d['data_samples'].metainfo['scale_factor']
        info[i] = torch.tensor([h, w, sw, sh])
    return image, info


def eager_detections(model, imgs):
    """The export's module run in PyTorch, then the runtime's NMS: what
    the ONNX graph computes, without the exporter."""
    from mmengine.structures import InstanceData
    from mmretina.deploy.export import RetinaNetONNX
    from mmretina.deploy.runtime import nms_after_graph
    wrapper = RetinaNetONNX(model).eval()
    assert wrapper.rotated and wrapper.box_dim == 5
    with torch.no_grad():
        dets, scores, labels, num = wrapper(*graph_inputs(model, imgs))
    assert dets.shape[-1] == 5
    out = []
    for i in range(len(imgs)):
        n = int(num[i])
        assert (scores[i, n:] == 0).all() and (scores[i, :n] > 0.05).all()
        cand = InstanceData(bboxes=dets[i, :n], scores=scores[i, :n],
                            labels=labels[i, :n])
        out.append(nms_after_graph(cand, wrapper.nms_cfg,
                                   wrapper.max_per_img))
    return out


@pytest.mark.parametrize('angle_version,coder,mmretina_types', [
    ('le90', {}, False),  # edge_swap, proj_xy: the config's
    ('oc', {}, False),  # no edge swap, no projection
    ('le90', dict(angle_version='le135', norm_factor=0.5), False),
    ('oc', dict(angle_version='r360', proj_xy=True), False),
    ('le90', {}, True),  # mmretina.RetinaHead's batched predict
])
def test_graph_module_equals_pytorch_detections(tmp_path, df_images,
                                                angle_version, coder,
                                                mmretina_types):
    """Every coder option the graph reads, without exporting: the export's
    module + nms_after_graph == the head's predict (mmdet's, or
    mmretina's) on a batch of two real images of different sizes."""
    config = str(tmp_path / 'c.py')
    with open(config, 'w') as f:
        f.write(config_text(angle_version))
    model = build_rotated(config, seed=1, mmretina_types=mmretina_types,
                          **coder)
    imgs = [mmcv.imread(df_images['OSBS_029.png']),
            mmcv.imread(df_images['SOAP_061.png'])[:300, :]]
    ref = PytorchBackend(model)(imgs)
    got = eager_detections(model, imgs)
    for r, g, size in zip(ref, got, ('400x400', '400x300')):
        assert_same_detections(
            r, g, f'{angle_version} {coder} {size}'
            + (' mmretina types' if mmretina_types else ''))


def test_no_candidate_gives_empty_five_wide_detections(tmp_path, df_images):
    config = str(tmp_path / 'c.py')
    with open(config, 'w') as f:
        f.write(config_text('le90'))
    model = build_rotated(config, bias=-30.0)
    img = mmcv.imread(df_images['OSBS_029.png'])
    ref = PytorchBackend(model)([img])[0]
    got = eager_detections(model, [img])[0]
    assert len(ref) == len(got) == 0
    assert tuple(got.bboxes.shape) == (0, 5)


def test_export_refuses_axis_aligned_nms_for_rotated_boxes(tmp_path):
    from mmretina.deploy.export import RetinaNetONNX
    config = str(tmp_path / 'c.py')
    with open(config, 'w') as f:
        f.write(config_text('le90'))
    model = build_rotated(config)
    cfg = dict(model.bbox_head.test_cfg)
    with pytest.raises(ValueError, match='nms_rotated'):
        RetinaNetONNX(model, dict(cfg, nms=dict(type='nms',
                                                iou_threshold=0.5)))
    with pytest.raises(ValueError, match='nms_pre'):
        RetinaNetONNX(model, dict(cfg, nms_pre=-1))


# ------------------------------------------------------------ the exports
@pytest.fixture(scope='module')
def le90_export(tmp_path_factory, df_images, run_tool):
    """The le90 model through tools/deployment/export_onnx.py --dynamic
    --check (a user's command on mmrotate's config)."""
    root = tmp_path_factory.mktemp('rotated_le90')
    config, ckpt, model = write_rotated(root, 'le90')
    out = root / 'le90.onnx'
    proc = run_tool(osp.join('deployment', 'export_onnx.py'), config, ckpt,
                    '--out', out, '--dynamic', '--check',
                    df_images['OSBS_029.png'])
    assert proc.returncode == 0, proc.stdout[-5000:]
    return str(out), proc.stdout, model


@pytest.fixture(scope='module')
def oc_export(tmp_path_factory):
    """The oc model with mmretina's RetinaHead and
    FakeRotatedAnchorGenerator, exported in-process, static
    1 x 3 x 256 x 256."""
    from mmretina.deploy.export import export_onnx
    root = tmp_path_factory.mktemp('rotated_oc')
    config, _, model = write_rotated(root, 'oc', mmretina_types=True)
    assert type(model.bbox_head).__module__.startswith('mmretina.')
    out = str(root / 'oc.onnx')
    export_onnx(model, out, model.cfg, dynamic=False,
                example_size=(SIZE, SIZE))
    return out, model


@pytest.mark.slow
def test_export_cli_check_on_mmrotate_config(le90_export):
    import onnx
    path, stdout, _ = le90_export
    assert 'dynamic batch and size' in stdout
    line = [ln for ln in stdout.splitlines() if ln.startswith('check on')]
    assert line and 'max |angle diff|' in line[0], stdout[-2000:]
    assert 'DIFFER' not in line[0]
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    # the decode is in the graph, NMS is not
    assert {'TopK', 'Conv', 'Sin', 'Cos'} <= ops
    assert 'NonMaxSuppression' not in ops
    assert model.graph.output[0].type.tensor_type.shape.dim[2].dim_value \
        == 5
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta['mmretina_format'] == 'retinanet-rbox-v1'
    assert meta['angle_version'] == 'le90'
    assert '"nms_rotated"' in meta['nms'] and meta['nms_iou'] == '0.1'


@pytest.mark.slow
@pytest.mark.parametrize('names', [
    ['OSBS_029.png'],  # 400 x 400 -> 256 x 256
    ['2019_YELL_2_541000_4977000_image_crop.png'],  # -> 256 x 212
    ['OSBS_029.png', '2019_YELL_2_541000_4977000_image_crop.png'],
])
def test_onnxruntime_le90_equals_pytorch(le90_export, df_images, names):
    from mmretina.deploy.backends import build_backend
    path, _, model = le90_export
    imgs = [mmcv.imread(df_images[n]) for n in names]
    ref = PytorchBackend(model)(imgs)
    backend = build_backend(path, 'onnxruntime', 1)
    assert backend.box_dim == 5 and backend.angle_version == 'le90'
    got = backend(imgs)
    for name, r, g in zip(names, ref, got):
        assert g.bboxes.dtype == torch.float32
        assert g.labels.dtype == torch.int64
        assert bool((g.scores[:-1] >= g.scores[1:]).all())
        assert_same_detections(r, g, f'le90 onnxruntime {name}')


@pytest.mark.slow
def test_onnxruntime_and_openvino_oc_equal_pytorch(oc_export, df_images):
    from mmretina.deploy.backends import build_backend
    path, model = oc_export
    img = mmcv.imread(df_images['SOAP_061.png'])
    ref = PytorchBackend(model)([img])[0]
    ort = build_backend(path, 'onnxruntime', 1)
    assert ort.static_hw == (SIZE, SIZE) and ort.angle_version == 'oc'
    assert_same_detections(ref, ort([img])[0], 'oc onnxruntime')
    pytest.importorskip('openvino')
    ov = build_backend(path, 'openvino', 1)([img])[0]
    # OpenVINO's kernels round differently (as for axis-aligned exports)
    assert_same_detections(ref, ov, 'oc OpenVINO', px=0.05, rel=1e-4,
                           rad=1e-3, score=1e-3)


@pytest.mark.slow
def test_int8_quantization_of_rotated_export_is_refused(oc_export,
                                                        tmp_path, df_images):
    from mmretina.deploy.quantize import quantize_model
    out = tmp_path / 'oc.int8.onnx'
    with pytest.raises(ValueError, match='not supported for rotated boxes'):
        quantize_model(oc_export[0], str(out),
                       osp.dirname(df_images['OSBS_029.png']))
    assert not out.exists()
