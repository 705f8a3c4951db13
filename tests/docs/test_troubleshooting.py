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
        for name in ('mmrotate', 'rasterio', 'safetensors.torch'):
            m.setitem(sys.modules, name, None)
        produced += [
            _raised(lambda: Config.fromfile(rotated)),
            _raised(lambda: require_for_config(Config.fromfile(str(mine)))),
            _raised(lambda: require('reading rasters')),
            _raised(lambda: load_weights_file(str(weights))),
        ]

    # pretrained weights that cannot be had: offline (the URL's file is
    # not there), a file that is not there, a torchvision name outside the
    # table known without torchvision (not installed here)
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    monkeypatch.setitem(sys.modules, 'torchvision', None)

    def resnet(checkpoint, **init):
        return MODELS.build(dict(
            type='ResNet', depth=18, base_channels=8, stem_channels=8,
            init_cfg=dict(type='PretrainedOrScratch', checkpoint=checkpoint,
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
