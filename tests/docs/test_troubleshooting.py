"""The Troubleshooting page is what the code says: every message of a
section (each code span in the first column of its tables, and each line of
its plain code blocks) is produced here by the code that raises or logs
it, and every message produced here matches one of them (``…`` standing
for the values of the run). A row that no code produces fails, and so does
a produced message without a row.

Missing optional packages are missing for real: the import fails (a
``None`` in ``sys.modules`` is how Python marks a module that cannot be
imported), and mmcv without its compiled ops is a copy of mmcv's package
without ``_ext``, imported in a fresh interpreter.
"""
import contextlib
import copy
import json
import logging
import os
import os.path as osp
import re
import subprocess
import sys
from typing import Callable, Iterator, List

import numpy as np
import pytest

# the Runners built here leave mmengine's current scope and logger alone
pytestmark = pytest.mark.usefixtures('runner_globals_kept')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAGE = osp.join(REPO, 'docs', 'user_guides', 'troubleshooting.md')


# ------------------------------------------------------------------ page
def _section(title: str) -> str:
    text = open(PAGE, encoding='utf-8').read()
    start = text.index(f'\n## {title}\n')
    end = text.find('\n## ', start + 1)
    return text[start:] if end < 0 else text[start:end]


def _messages_of(title: str) -> List[str]:
    """The messages a section quotes: the code spans of the first cell of
    each table row, and the lines of each code block without a language."""
    out, block = [], None
    for line in _section(title).splitlines():
        if line.startswith('```'):
            block = (line.strip() == '```') if block is None else None
            continue
        if block is not None:
            if block and line.strip():
                out.append(line.strip())
            continue
        if not line.startswith('| '):
            continue
        first = line[2:].split(' | ')[0]
        if first != 'Message':
            out.extend(re.findall(r'`([^`]+)`', first))
    return out


def _pattern(message: str):
    parts = [re.escape(p) for p in message.split('…')]
    return re.compile('^' + '.+?'.join(parts) + '$', re.S)


def _check(title: str, produced: List[str]) -> None:
    rows = _messages_of(title)
    assert rows, f'section {title!r} of {PAGE} quotes no message'
    patterns = [_pattern(r) for r in rows]
    unmatched = [m for m in produced if not any(p.match(m) for p in patterns)]
    assert not unmatched, (
        f'messages without a row in section {title!r} of {PAGE}: '
        f'{unmatched}')
    unused = [r for r, p in zip(rows, patterns)
              if not any(p.match(m) for m in produced)]
    assert not unused, (
        f'rows of section {title!r} of {PAGE} no code produced: {unused}')


SECTIONS = (
    'Install, imports and pretrained weights', 'Annotation file', 'Classes',
    'Images', 'Boxes and empty images', 'Config mistakes',
    'NaN / inf during training',
    'Rasters, ground sample distance and GIS layers',
    'Interrupted runs and damaged checkpoints', 'ONNX export and INT8')


def test_every_section_is_produced_by_a_test_here():
    """A new section of the page needs its test below (each test checks
    one of :data:`SECTIONS`)."""
    text = open(PAGE, encoding='utf-8').read()
    assert re.findall(r'^## (.+)$', text, re.M) == list(SECTIONS)
    for title in SECTIONS:
        assert _messages_of(title), title
    src = open(__file__, encoding='utf-8').read()
    for title in SECTIONS:
        assert src.count(f'_check({title!r}') == 1, title


# ------------------------------------------------------------ producing
def _raised(call: Callable) -> str:
    """``Type: message`` of what ``call`` raises (as a traceback ends,
    without the module of the class)."""
    with pytest.raises(Exception) as e:
        call()
    return f'{type(e.value).__name__}: {e.value}'


def _usage_error(main: Callable, argv: List[str], capsys) -> str:
    """The last line argparse prints when ``main(argv)`` is refused."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


class _Lines(logging.Handler):

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _logged(level: int = logging.WARNING) -> Iterator[List[str]]:
    """The lines logged at ``level`` or above through mmengine's current
    logger (``print_log(logger='current')``, a Runner's logger) while the
    block runs."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    handler = _Lines(level)
    old = logger.level
    logger.setLevel(min(old, level))
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


# --------------------------------------------------------------- install
def _import_without_mmcv_ops(tmp_path) -> str:
    """The last line of ``python -c 'import mmretina'`` with an mmcv that
    lacks its compiled ops (``mmcv/_ext*.so``), as mmcv-lite or an mmcv
    built without ``MMCV_WITH_OPS=1``."""
    import mmcv
    src = osp.dirname(mmcv.__file__)
    if not any(n.startswith('_ext') for n in os.listdir(src)):
        pytest.skip('this mmcv has no compiled ops to leave out')
    lite = tmp_path / 'lite' / 'mmcv'
    lite.mkdir(parents=True)
    for name in os.listdir(src):
        if not name.startswith('_ext') and name != '__pycache__':
            os.symlink(osp.join(src, name), lite / name)
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(lite.parent), REPO]))
    proc = subprocess.run([sys.executable, '-c', 'import mmretina'],
                          cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0, 'mmretina imported without mmcv ops'
    return proc.stderr.strip().splitlines()[-1]


def test_install_messages(tmp_path, monkeypatch):
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config

    import mmretina.models.pretrained_init  # noqa: F401  (registers it)
    from mmretina.geo.formats import require
    from mmretina.models.converters.torchvision import load_weights_file
    from mmretina.utils.mmrotate import require_for_config
    produced = [_import_without_mmcv_ops(tmp_path)]

    rotated = osp.join(REPO, 'configs', 'rotated',
                       'rotated_retinanet_r18_fpn_oriented_demo.py')
    mine = tmp_path / 'mine.py'
    mine.write_text("default_scope = 'mmrotate'\n")
    weights = tmp_path / 'deepforest.safetensors'
    weights.write_bytes(b'')
    with monkeypatch.context() as m:  # the extras, not installed
        for name in ('mmrotate', 'rasterio', 'safetensors',
                     'safetensors.torch'):
            m.setitem(sys.modules, name, None)
        produced += [
            _raised(lambda: Config.fromfile(rotated)),
            _raised(lambda: require_for_config(Config.fromfile(str(mine)))),
            _raised(lambda: require('reading rasters')),
            _raised(lambda: load_weights_file(str(weights))),
        ]

    # pretrained weights that cannot be had: offline (the URL's file is
    # not there), a file that is not there, a torchvision name outside the
    # table known without torchvision (which is made missing)
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    monkeypatch.setitem(sys.modules, 'torchvision', None)

    def resnet(checkpoint, **init):
        return MODELS.build(dict(
            type='ResNet', depth=18, base_channels=8, stem_channels=8,
            init_cfg=dict(type='CheckedPretrained', checkpoint=checkpoint,
                          **init)))

    offline = 'file://' + str(tmp_path / 'server' / 'resnet50-0676ba61.pth')
    for checkpoint in (offline, str(tmp_path / 'resnet50.pth'),
                       'torchvision://resnet50.imagenet1k_v2'):
        produced.append(_raised(resnet(checkpoint).init_weights))
    with _logged() as lines:
        resnet(offline, allow_scratch=True).init_weights()
    produced += lines
    _check('Install, imports and pretrained weights', produced)


# --------------------------------------------------------------- rasters
def _write_raster(path, gsd=0.1, count=3):
    from rasterio.transform import from_origin
    import rasterio
    with rasterio.open(path, 'w', driver='GTiff', width=64, height=48,
                       count=count, dtype='uint8', crs='EPSG:32617',
                       transform=from_origin(0, 0, gsd, gsd)) as ds:
        ds.write(np.zeros((count, 48, 64), np.uint8))
    return str(path)


def test_raster_messages(tmp_path):
    rasterio = pytest.importorskip('rasterio')
    from mmretina.cli.options import resolve_gsd
    from mmretina.geo.raster import (RasterSource, parse_bands, parse_gsd,
                                     parse_scale)
    from mmretina.inference.run import InferenceRun, list_inputs
    from mmretina.inference.tiled import TiledInferencer
    a = _write_raster(tmp_path / 'a.tif')
    coarse = _write_raster(tmp_path / 'coarse.tif', gsd=10.0)
    (tmp_path / 'bad.tif').write_text('not a tiff')
    (tmp_path / 'empty').mkdir()
    with rasterio.open(tmp_path / 'plain.tif', 'w', driver='GTiff', width=8,
                       height=8, count=3, dtype='uint8') as ds:
        ds.write(np.zeros((3, 8, 8), np.uint8))
    nothing = TiledInferencer(lambda imgs: [], tile=1 << 30)
    calls = [
        lambda: RasterSource(str(tmp_path / 'missing.tif')),
        lambda: RasterSource(str(tmp_path / 'bad.tif')),
        lambda: RasterSource(a, bands=(1, 2, 4)),
        lambda: parse_bands('1,2'),
        lambda: parse_scale(['p5,p1']),
        lambda: parse_scale(['a,b']),
        lambda: parse_scale(['5,1']),
        lambda: RasterSource(a, scale=[(0, 1), (0, 1)]),
        lambda: parse_gsd('ten'),
        lambda: RasterSource(coarse, gsd=0.1),
        lambda: list_inputs(str(tmp_path / 'empty')),
        lambda: list_inputs(str(tmp_path / 'nope.tif')),
        lambda: InferenceRun(nothing, max_pixels=100,
                             out=str(tmp_path / 'x.png')).run([a]),
        lambda: InferenceRun(nothing, fmt='kml'),
    ]
    produced = [_raised(call) for call in calls]
    lines = []
    InferenceRun(TiledInferencer(lambda imgs: [[]][:0], tile=1 << 30),
                 gsd=0.1, out=str(tmp_path / 'p.png'),
                 log=lines.append)._note_source(
                     RasterSource(str(tmp_path / 'plain.tif'), gsd=0.1))
    resolve_gsd('auto', None, lines.append)
    _check('Rasters, ground sample distance and GIS layers',
           produced + lines)


# ------------------------------------------------------------ ONNX / INT8
def _onnx_model(path, size=32, resize=32, opset=18, dynamic=False,
                fmt='retinanet-v1', drop=(), **meta) -> str:
    """A graph with the inputs, outputs and metadata of an mmretina export
    (built here: a real export takes half a minute): one convolution,
    whose weight is named as the export names the head's classifier (so
    INT8 quantization finds the conv group ``bbox_head.retina_cls``), and
    one detection per image, box [4, 4, 20, 20] of class 0 scored by the
    sigmoid of the convolution's maximum. Written to ``path``; returned."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    batch = 'N' if dynamic else 1
    weight = np.random.default_rng(0).normal(0, 0.1, (1, 3, 3, 3))
    nodes = [
        helper.make_node('Conv', ['image', 'w'], ['feat'], name='conv',
                         pads=[1, 1, 1, 1]),
        helper.make_node('ReduceMax', ['feat', 'axes'], ['peak'],
                         keepdims=0),
        helper.make_node('Reshape', ['peak', 'one_one'], ['logit']),
        helper.make_node('Sigmoid', ['logit'], ['scores']),
        helper.make_node('Identity', ['box'], ['dets']),
        helper.make_node('Identity', ['label'], ['labels']),
        helper.make_node('Identity', ['count'], ['num_dets']),
    ]
    inits = [
        numpy_helper.from_array(weight.astype(np.float32), 'w'),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), 'axes'),
        numpy_helper.from_array(np.array([1, 1], np.int64), 'one_one'),
        numpy_helper.from_array(
            np.array([[[4, 4, 20, 20]]], np.float32), 'box'),
        numpy_helper.from_array(np.zeros((1, 1), np.int64), 'label'),
        numpy_helper.from_array(np.ones(1, np.int64), 'count'),
    ]
    inits[0].name = 'detector.bbox_head.retina_cls.weight'
    nodes[0].input[1] = inits[0].name
    graph = helper.make_graph(
        nodes, 'tiny', [
            helper.make_tensor_value_info('image', TensorProto.FLOAT,
                                          [batch, 3, size, size]),
            helper.make_tensor_value_info('img_info', TensorProto.FLOAT,
                                          [batch, 4]),
        ], [
            helper.make_tensor_value_info('dets', TensorProto.FLOAT,
                                          [1, 1, 4]),
            helper.make_tensor_value_info('scores', TensorProto.FLOAT,
                                          [1, 1]),
            helper.make_tensor_value_info('labels', TensorProto.INT64,
                                          [1, 1]),
            helper.make_tensor_value_info('num_dets', TensorProto.INT64,
                                          [1]),
        ], inits)
    model = helper.make_model(graph,
                              opset_imports=[helper.make_opsetid('', opset)])
    model.ir_version = 8
    metadata = dict(
        mmretina_format=fmt,
        test_pipeline=json.dumps([
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=[resize, resize], keep_ratio=True),
            dict(type='PackDetInputs')
        ]),
        pad_size_divisor='32', pad_value='[0.0, 0.0, 0.0]',
        classes='["square", "bar"]', nms_iou='0.5', max_per_img='100')
    metadata.update(meta)
    for key, value in metadata.items():
        if key not in drop:
            model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return str(path)


def _tiny_detector(tmp_path, **head):
    """The tiny RetinaNet of mmretina.testing (random weights), with
    the keys of ``head`` replaced in its ``bbox_head`` config."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from mmretina.testing import write_tiny_config
    cfg = Config.fromfile(write_tiny_config(str(tmp_path / 'tiny.py'),
                                            str(tmp_path / 'data')))
    for key, value in head.items():
        cfg.model.bbox_head[key] = value
    return MODELS.build(cfg.model).eval(), cfg


def test_onnx_and_int8_messages(tmp_path, monkeypatch, capsys):
    import mmcv
    from mmdet.registry import TASK_UTILS

    from mmretina.cli import export_onnx as export_cli
    from mmretina.cli import quantize as quantize_cli
    from mmretina.deploy.backends import (ExportedDetector, build_backend,
                                          check_exported_model)
    from mmretina.deploy.export import export_onnx
    from mmretina.deploy.quantize import quantize_model
    from mmretina.deploy.runtime import OrtBackend
    from mmretina.testing import make_coco
    data = tmp_path / 'data'
    ann = make_coco(str(data), num_images=2)
    model = _onnx_model(tmp_path / 'model.onnx')
    (tmp_path / 'junk.onnx').write_bytes(b'not a protobuf at all')
    foreign = _onnx_model(tmp_path / 'foreign.onnx',
                          drop=('mmretina_format', 'classes'))
    old = _onnx_model(tmp_path / 'old.onnx', opset=17)
    dynamic = _onnx_model(tmp_path / 'dynamic.onnx', dynamic=True)
    oriented = _onnx_model(tmp_path / 'oriented.onnx',
                           fmt='retinanet-rbox-v1',
                           nms='{"type": "nms_rotated"}')
    small = _onnx_model(tmp_path / 'small.onnx', resize=64)
    (tmp_path / 'no_images').mkdir()
    (tmp_path / 'unreadable').mkdir()
    (tmp_path / 'unreadable' / 'a.png').write_bytes(b'not a png')
    (tmp_path / 'not_coco.json').write_text('[1, 2')
    (tmp_path / 'no_coco_images.json').write_text('{"images": []}')
    (tmp_path / 'far').mkdir()
    (tmp_path / 'far' / 'ann.json').write_text(
        json.dumps(dict(images=[dict(id=1, file_name='x.png')])))

    def quantize(src, calib=str(data / 'images'), **kw):
        return lambda: quantize_model(src, str(tmp_path / 'q.onnx'), calib,
                                      **kw)

    produced = [_raised(call) for call in [
        lambda: check_exported_model(str(tmp_path / 'missing.onnx')),
        lambda: check_exported_model(str(tmp_path / 'junk.onnx')),
        lambda: check_exported_model(foreign),
        lambda: check_exported_model(old),
        lambda: build_backend(model, 'tensorrt'),
        lambda: OrtBackend(foreign),
        lambda: OrtBackend(small)([mmcv.imread(str(data / 'images' /
                                                   '0000.png'))]),
        lambda: ExportedDetector(model).forward([], [], mode='loss'),
        quantize(dynamic),
        quantize(oriented),
        quantize(model, exclude=['backbone.layer4']),
        quantize(model, method='kl'),
        quantize(model, calib=str(tmp_path / 'no_images')),
        quantize(model, calib=str(tmp_path / 'nowhere')),
        quantize(model, calib=str(tmp_path / 'not_coco.json')),
        quantize(model, calib=str(tmp_path / 'no_coco_images.json')),
        quantize(model, calib=str(tmp_path / 'far' / 'ann.json')),
        quantize(model, calib=str(tmp_path / 'unreadable')),
    ]]
    onnx = sys.modules['onnx']
    with monkeypatch.context() as m:  # the deploy extra, not installed
        for name in ('onnx', 'onnxruntime', 'openvino'):
            m.setitem(sys.modules, name, None)
        produced.append(_raised(lambda: check_exported_model(model)))
        m.setitem(sys.modules, 'onnx', onnx)
        produced += [_raised(lambda: build_backend(model, backend))
                     for backend in ('onnxruntime', 'openvino')]
        m.setitem(sys.modules, 'onnxscript', None)
        with pytest.raises(SystemExit) as e:
            export_cli.main(['tiny.py', 'tiny.pth', '--out', 'x.onnx'])
        produced.append(str(e.value))

    # what the export refuses before exporting (the tiny RetinaNet)
    detector, cfg = _tiny_detector(tmp_path)
    out = str(tmp_path / 'export' / 'x.onnx')
    nms = cfg.model.test_cfg.nms
    for test_cfg in (dict(cfg.model.test_cfg, nms=dict(nms, type='soft_nms')),
                     dict(cfg.model.test_cfg, nms_pre=-1)):
        produced.append(_raised(lambda: export_onnx(detector, out, cfg,
                                                    test_cfg=test_cfg)))
    head = detector.bbox_head
    coder = head.bbox_coder
    for other in (dict(type='TBLRBBoxCoder'),
                  dict(type='DeltaXYWHBBoxCoder', add_ctr_clamp=True)):
        head.bbox_coder = TASK_UTILS.build(other)
        produced.append(_raised(lambda: export_onnx(detector, out, cfg)))
    head.bbox_coder = coder
    softmax, _ = _tiny_detector(  # mmdet's head (mmretina's refuses it)
        tmp_path, type='RetinaHead',
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False))
    produced.append(_raised(lambda: export_onnx(softmax, out, cfg)))
    (tmp_path / 'a_file').write_text('')
    produced.append(_raised(lambda: export_onnx(
        detector, str(tmp_path / 'a_file' / 'x.onnx'), cfg)))

    # the commands' own refusals
    produced += [
        _usage_error(export_cli.main, ['c.py', 'c.pth', '--out', 'x.onnx',
                                       '--opset', '17'], capsys),
        _usage_error(export_cli.main, ['c.py', 'c.pth', '--out', 'x.onnx',
                                       '--shape', '100', '100'], capsys),
        _usage_error(quantize_cli.main, ['c.py', 'm.onnx', '--calib-data',
                                         'd', '--out', 'q.onnx',
                                         '--num-calib', '0'], capsys),
        _usage_error(quantize_cli.main, ['c.py', 'm.onnx', '--calib-data',
                                         'd', '--out', 'm.onnx'], capsys),
    ]
    # INT8 that cannot meet --max-drop (an impossible -1): nothing written
    from mmretina.testing import write_tiny_config
    config = write_tiny_config(str(tmp_path / 'quant.py'), str(data))
    capsys.readouterr()
    assert quantize_cli.main([
        config, model, '--calib-data', ann, '--num-calib', '2', '--val-ann',
        ann, '--max-drop', '-1', '--out', str(tmp_path / 'int8.onnx'),
        '--threads', '1'
    ]) == 1
    produced += [line for line in capsys.readouterr().err.splitlines()
                 if line.startswith('error: ')]
    assert not (tmp_path / 'int8.onnx').exists()
    _check('ONNX export and INT8', produced)


# ------------------------------------------------------ training: data
CATS = [dict(id=1, name='cat'), dict(id=2, name='dog')]


def _image(i, name=None, size=128):
    return dict(id=i, file_name=name or f'{i:04d}.png', width=size,
                height=size)


def _ann(i, image_id=1, bbox=(10, 10, 20, 20), category_id=1, **kw):
    ann = dict(id=i, image_id=image_id, category_id=category_id,
               bbox=list(bbox), area=float(bbox[2] * bbox[3]), iscrowd=0)
    ann.update(kw)
    return ann


def _coco(root, content, classes=('cat', 'dog'), name='ann.json', **kw):
    """``mmretina.CocoDataset`` of ``root/name``, written from ``content``
    (a dict, as JSON, or the file's text) unless ``content`` is None."""
    from mmretina.registry import DATASETS
    if content is not None:
        (root / name).write_text(content if isinstance(content, str) else
                                 json.dumps(content))
    kw.setdefault('check_images', False)
    return DATASETS.build(dict(
        type='mmretina.CocoDataset', data_root=str(root) + '/',
        ann_file=name, data_prefix=dict(img='images/'), pipeline=[],
        metainfo=None if classes is None else dict(classes=classes), **kw))


def test_annotation_file_messages(tmp_path):
    (tmp_path / 'a_folder').mkdir()
    images = [_image(1)]

    def coco(images=images, annotations=(), categories=CATS):
        return dict(images=images, annotations=list(annotations),
                    categories=categories)

    contents = [
        '', '{"images": [', '[1, 2]',
        coco(images=[dict(id=1, width=10, height=10)]),
        coco(images=[dict(file_name='a.png', width=10, height=10)]),
        coco(images=[dict(id=1, file_name='x.png', height=10)]),
        coco(images=[5]),
        coco(annotations=[5]),
        coco(annotations=[_ann(1, bbox=('10', 10, 5, 5))]),
        coco(annotations=[_ann(1, category_id=5)]),
        coco(categories=[dict(id=1)]),
        coco(images=[_image(1), _image(1, 'b.png')]),
        coco(annotations=[_ann(7), _ann(7)]),
    ] + [coco(annotations=[{k: v for k, v in _ann(1).items() if k != key}])
         for key in ('id', 'image_id', 'category_id', 'bbox')]
    produced = [
        _raised(lambda: _coco(tmp_path, None, name='missing.json')),
        _raised(lambda: _coco(tmp_path, None, name='a_folder')),
    ] + [_raised(lambda: _coco(tmp_path, c)) for c in contents]
    with _logged() as lines:
        _coco(tmp_path, coco(annotations=[_ann(1), _ann(2, image_id=99)]))
    _check('Annotation file', produced + lines)


def test_classes_messages(tmp_path):
    file = dict(images=[_image(1)], categories=CATS,
                annotations=[_ann(1), _ann(2, category_id=2)])
    twice = dict(file, categories=CATS + [dict(id=3, name='dog')])
    produced = [_raised(lambda: _coco(tmp_path, *args)) for args in [
        (file, ('cat', 'bird')), (file, None), (twice, ('cat', 'dog')),
        (file, ('dog', 'cat'))]]
    with _logged(logging.INFO) as lines:
        _coco(tmp_path, file, ('cat', ))
    _check('Classes', produced + lines)


def test_image_messages(tmp_path, monkeypatch):
    import cv2

    from mmretina.registry import TRANSFORMS
    monkeypatch.chdir(tmp_path)  # data_root='data/', as configs write it
    images = tmp_path / 'data' / 'images'
    images.mkdir(parents=True)
    for name in ('1.png', '3.png'):
        cv2.imwrite(str(images / name), np.zeros((12, 20, 3), np.uint8))
    (images / 'broken.png').write_bytes(b'not an image, just 27 bytes')
    (images / 'folder.png').mkdir()
    from mmretina.registry import DATASETS

    def dataset(names):
        (tmp_path / 'data' / 'ann.json').write_text(json.dumps(dict(
            images=[_image(i, n, 12) for i, n in enumerate(names)],
            annotations=[], categories=CATS)))
        return DATASETS.build(dict(
            type='mmretina.CocoDataset', data_root='data/',
            ann_file='ann.json', data_prefix=dict(img='images/'),
            metainfo=dict(classes=('cat', 'dog')), pipeline=[]))

    load = TRANSFORMS.build(dict(type='mmretina.LoadImageFromFile'))
    produced = [_raised(call) for call in [
        lambda: dataset(['1.png', '2.png', '3.png']),
        lambda: dataset(['4.png', '5.png', '6.png']),
        lambda: load(dict(img_path='data/images/7.png', img_id=7)),
        lambda: load(dict(img_path='data/images/broken.png', img_id=8)),
        lambda: load(dict(img_path='data/images/folder.png', img_id=9)),
    ]]
    with _logged() as lines:
        skip = TRANSFORMS.build(dict(type='mmretina.LoadImageFromFile',
                                     ignore_empty=True))
        assert skip(dict(img_path='data/images/broken.png')) is None
        load(dict(img_path='data/images/1.png', img_id=1, width=12,
                  height=20))
    _check('Images', produced + lines)


def test_box_and_empty_image_messages(tmp_path):
    nan = float('nan')
    box_file = dict(images=[_image(i) for i in range(4)], categories=CATS,
                    annotations=[
                        _ann(1000, 0, (10, 10, 0, 8)),
                        _ann(1001, 0, (10, 10, 8, -1)),
                        _ann(1002, 0, (nan, 1, 5, 5)),
                        _ann(1003, 0, (500, 500, 10, 10)),
                        _ann(1004, 1, (10, 10, 0.5, 8)),
                        _ann(2000, 2, (100, 100, 60, 60)),
                    ] + [_ann(3000 + i, i % 4, category_id=1 + i % 2)
                         for i in range(5)])
    no_area = dict(images=[_image(1)], categories=CATS,
                   annotations=[_ann(1, area=0)])
    all_bad = dict(images=[_image(1)], categories=CATS,
                   annotations=[_ann(1, bbox=(10, 10, 0, 0))])
    some_empty = dict(images=[_image(i) for i in range(5)], categories=CATS,
                      annotations=[_ann(i, i) for i in range(3)])
    filter_cfg = dict(filter_empty_gt=True, min_size=0)
    with _logged(logging.INFO) as lines:
        for content, kw in [(box_file, {}), (no_area, {}), (all_bad, {}),
                            (some_empty, dict(filter_cfg=filter_cfg))]:
            _coco(tmp_path, content, **kw)
    small = dict(images=[_image(i, size=32) for i in range(3)],
                 categories=CATS, annotations=[_ann(i, i) for i in range(3)])
    produced = [
        _raised(lambda: _coco(tmp_path, small, filter_cfg=dict(
            filter_empty_gt=True, min_size=64))),
        _raised(lambda: _coco(tmp_path, dict(images=[], categories=CATS))),
    ]
    _check('Boxes and empty images', lines + produced)


# ------------------------------------------------- training: config, NaN
def test_config_messages(tmp_path):
    from mmretina.engine.hooks import NumClassesCheckHook
    from mmretina.registry import MODELS
    from mmretina.testing import retina_head_cfg
    produced = [_raised(lambda: MODELS.build(cfg)) for cfg in [
        dict(type='mmretina.RetinaHeadd'),
        dict(type='mmretina.ResNett'),
        dict(type='mmretina.FocalLoss', gama=2.0),
        dict(type='mmretina.RetinaHead', num_classes=2),
    ]]
    # the head's num_classes against the training set's classes
    head = retina_head_cfg(num_classes=3, in_channels=8, feat_channels=8,
                           stacked_convs=1, strides=(8, 16))
    for name, metainfo in [('pair', dict(classes=('cat', 'dog'))),
                           ('string', dict(classes='tree')),
                           ('none', None)]:
        runner = _toy_runner(tmp_path / name, _toy_model(head=head),
                             metainfo=metainfo)
        runner.train_loop  # builds the loader (mmengine logs about it)
        with _logged() as lines:
            try:
                NumClassesCheckHook().before_train(runner)
            except ValueError as e:
                lines.append(f'ValueError: {e}')
        produced += lines
    _check('Config mistakes', produced)


def _toy_model(bad_at=None, head=None, bad='nan'):
    """A model an mmengine Runner trains in well under a second.

    Without ``head``: y = w.x + b with the losses ``loss_cls`` (squared
    error) and ``loss_bbox`` (half of it), ``loss_cls`` NaN on training
    call ``bad_at`` (the case of mmdet's heads, which do not check their
    loss). With ``head`` (a config): that head on a 1 x 1 convolution of
    32 x 32 images with one box [4, 4, 20, 20] each; on call ``bad_at``
    the features are NaN (``bad='nan'``) or the box is ``bad``."""
    import torch
    import torch.nn.functional as F
    from mmengine.model import BaseModel
    from mmengine.structures import InstanceData
    from torch import nn

    from mmretina.registry import MODELS

    class Toy(BaseModel):

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 1)
            self.bbox_head = None if head is None else MODELS.build(head)
            self.calls = 0

        def forward(self, inputs, mode='tensor'):
            if mode != 'loss':
                return inputs
            self.calls += 1
            poison = self.calls == bad_at
            if self.bbox_head is None:
                loss = (self.stem(inputs).mean() - 0.5)**2
                return dict(loss_cls=loss * (math_nan if poison else 1),
                            loss_bbox=0.5 * loss)
            x = self.stem(inputs)
            feats = [F.avg_pool2d(x, 8), F.avg_pool2d(x, 16)]
            box = [4.0, 4.0, 20.0, 20.0]
            if poison and bad == 'nan':
                feats = [f * math_nan for f in feats]
            elif poison:
                box = bad
            metas = [dict(img_shape=(32, 32), pad_shape=(32, 32),
                          batch_input_shape=(32, 32), img_path=f'{i}.png')
                     for i in range(len(inputs))]
            gts = [InstanceData(bboxes=torch.tensor([box]),
                                labels=torch.tensor([0]))
                   for _ in range(len(inputs))]
            return self.bbox_head.loss_by_feat(*self.bbox_head(feats), gts,
                                              metas)

    math_nan = float('nan')
    return Toy()


def _toy_runner(work_dir, model, ckpt_interval=2, hook_interval=1,
                metainfo=None):
    """A Runner of ``model`` on eight random 32 x 32 images (``metainfo``
    the dataset's), 4 iterations, a checkpoint every ``ckpt_interval``."""
    import torch
    from mmengine.runner import Runner

    class Images(torch.utils.data.Dataset):

        def __init__(self):
            if metainfo is not None:
                self.metainfo = metainfo

        def __len__(self):
            return 8

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return dict(inputs=torch.rand(3, 32, 32, generator=g))

    return Runner(
        model=model, work_dir=str(work_dir),
        experiment_name=f'troubleshooting_{os.getpid()}_{id(model)}',
        default_scope='mmdet',
        train_dataloader=dict(
            dataset=Images(), batch_size=2, num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=4),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=ckpt_interval,
                            by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='mmretina.CheckFiniteLossHook',
                           interval=hook_interval)],
        log_level='WARNING')


def _train_until_it_stops(work_dir, model, **kw) -> str:
    """What training ``model`` stops with, as ``tools/train.py`` words it
    (the iteration and the checkpoint added to an error raised inside an
    iteration: :func:`mmretina.engine.hooks.non_finite_message`)."""
    from mmretina.engine.hooks import non_finite_message
    runner = _toy_runner(work_dir, model, **kw)
    with pytest.raises(Exception) as e:
        runner.train()
    if isinstance(e.value, FloatingPointError):
        msg = non_finite_message(runner, e.value)
        if msg is not None:
            return f'FloatingPointError: {msg}'
    return f'{type(e.value).__name__}: {e.value}'


def _other_rank_stops(rank: int, port: int, work_dir: str, queue) -> None:
    """Rank ``rank`` of a 2-process gloo run of the toy model, whose loss
    turns NaN on rank 1 only (iteration 3)."""
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=2)
    try:
        _toy_runner(work_dir, _toy_model(bad_at=3 if rank else None)).train()
        queue.put((rank, None))
    except Exception as e:  # what each rank stops with
        queue.put((rank, f'{type(e).__name__}: {e}'))
    finally:
        dist.destroy_process_group()


def _distributed_run(tmp_path) -> List[str]:
    """The two ranks' messages when one rank's loss is NaN (forked
    processes: the modules are imported already)."""
    import multiprocessing
    import socket
    from queue import Empty
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_other_rank_stops,
                         args=(rank, port, str(tmp_path / 'dist'), queue))
             for rank in (0, 1)]
    for p in procs:
        p.start()
    out = None
    try:
        out = dict(queue.get(timeout=120) for _ in procs)
        for p in procs:
            p.join(timeout=60)
    except Empty:
        pass
    finally:  # no rank outlives the test, whatever stopped it
        hung = [rank for rank, p in enumerate(procs) if p.is_alive()]
        for rank in hung:
            procs[rank].kill()
            procs[rank].join()
    if out is None:
        pytest.fail('2-process gloo run: a rank reported nothing within '
                    f'120 s; ranks {hung} killed')
    if hung:
        pytest.fail(f'2-process gloo run: ranks {hung} still running 60 s '
                    f'after reporting {out}; killed')
    return [out[0], out[1]]


def test_nan_and_inf_messages(tmp_path, one_thread):
    from mmengine.config import Config

    from mmretina.engine.hooks import (CheckFiniteLossHook,
                                       ensure_finite_loss_guard)
    from mmretina.testing import retina_head_cfg
    head = retina_head_cfg(num_classes=2, in_channels=8, feat_channels=8,
                           stacked_convs=1, strides=(8, 16))
    # box targets divided by a zero std: finite outputs, an infinite loss
    zero_std = copy.deepcopy(head)
    zero_std.bbox_coder.target_stds = [1.0, 1.0, 0.0, 0.0]
    produced = [_train_until_it_stops(tmp_path / name, model, **kw)
                for name, model, kw in [
                    ('head_nan', _toy_model(3, head), {}),
                    ('zero_std', _toy_model(head=zero_std), {}),
                    ('inf_box', _toy_model(1, head, [4, 4, 20, 1e400]), {}),
                    ('loss', _toy_model(4), {}),
                    ('first', _toy_model(1), {}),
                    ('weights', _toy_model(3), dict(hook_interval=5)),
                ]]
    produced += _distributed_run(tmp_path)
    produced.append(_raised(lambda: CheckFiniteLossHook(interval=0)))
    produced += [ensure_finite_loss_guard(Config(cfg)) for cfg in [
        dict(default_hooks=dict(logger=dict(type='LoggerHook'))),
        dict(default_hooks=dict(check_finite_loss=None))]]
    _check('NaN / inf during training', produced)


# ------------------------------------------- training: interrupted runs
def test_interrupted_run_messages(tmp_path):
    import zipfile

    import torch
    from mmengine.config import Config

    from mmretina.engine.resume import check_checkpoint, check_resume
    run = tmp_path / 'run'
    run.mkdir()
    torch.save(dict(state_dict=dict(w=torch.zeros(2))), run / 'iter_4.pth')
    intact = (run / 'iter_4.pth').read_bytes()
    (run / 'iter_6.pth').write_bytes(intact[:1000])  # killed while saving
    (run / 'iter_7.pth').write_bytes(b'')
    (run / 'iter_8.pth').write_text('not a checkpoint')
    (run / 'iter_9.pth').mkdir()
    with zipfile.ZipFile(run / 'iter_5.pth', 'w') as z:
        z.writestr('archive/version', '3')
    alone = tmp_path / 'alone'
    alone.mkdir()
    (alone / 'iter_2.pth').write_bytes(intact[:1000])
    moved = tmp_path / 'moved'
    moved.mkdir()
    (moved / 'last_checkpoint').write_text('/old/place/iter_10.pth')
    (moved / 'iter_10.pth').write_bytes(intact)
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'last_checkpoint').write_text('/old/place/iter_10.pth')
    unwritten = tmp_path / 'unwritten'  # killed before naming its file
    unwritten.mkdir()
    (unwritten / 'last_checkpoint').write_text('')
    (unwritten / 'iter_10.pth').write_bytes(intact)

    produced = [_raised(call) for call in [
        lambda: check_checkpoint(str(run / 'iter_6.pth'), 'resume'),
        lambda: check_checkpoint(str(run / 'iter_7.pth'), 'resume'),
        lambda: check_checkpoint(str(run / 'iter_8.pth'), 'resume'),
        lambda: check_checkpoint(str(run / 'iter_9.pth'), 'resume'),
        lambda: check_checkpoint(str(run / 'iter_5.pth'), 'resume'),
        lambda: check_checkpoint(str(run / 'iter_11.pth'), 'resume'),
        lambda: check_checkpoint(str(alone / 'iter_2.pth'), 'resume'),
        lambda: check_checkpoint(str(run / 'iter_6.pth'), 'load'),
        lambda: check_checkpoint(str(alone / 'iter_2.pth'), 'load'),
        lambda: check_resume(Config(dict(work_dir=str(moved), resume=True))),
        lambda: check_resume(Config(dict(work_dir=str(empty), resume=True))),
        lambda: check_resume(Config(dict(work_dir=str(unwritten),
                                         resume=True))),
    ]]
    _check('Interrupted runs and damaged checkpoints', produced)
