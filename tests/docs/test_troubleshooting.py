"""The Troubleshooting page's raster / GSD / GIS section is what the code
says: each message of that table is produced here, and each produced
message matches a row (``…`` standing for the values of the run)."""
import os
import os.path as osp
import re

import numpy as np
import pytest

rasterio = pytest.importorskip('rasterio')
from rasterio.transform import from_origin  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAGE = osp.join(REPO, 'docs', 'user_guides', 'troubleshooting.md')
SECTION = '## Rasters, ground sample distance and GIS layers'


def _rows():
    text = open(PAGE).read()
    body = text[text.index(SECTION):]
    body = body[:body.index('\n## ', 1)]
    return re.findall(r'^\| (?:log: )?`(.+?)` \|', body, re.M)


def _pattern(row: str):
    parts = [re.escape(p) for p in row.split('…')]
    return re.compile('^' + '.+?'.join(parts) + '$', re.S)


def _write(path, gsd=0.1, count=3):
    with rasterio.open(path, 'w', driver='GTiff', width=64, height=48,
                       count=count, dtype='uint8', crs='EPSG:32617',
                       transform=from_origin(0, 0, gsd, gsd)) as ds:
        ds.write(np.zeros((count, 48, 64), np.uint8))
    return str(path)


def _produced(tmp_path):
    from mmretina.cli.options import resolve_gsd
    from mmretina.geo.formats import require
    from mmretina.geo.raster import (RasterSource, parse_bands, parse_gsd,
                                     parse_scale)
    from mmretina.inference.run import InferenceRun, list_inputs
    from mmretina.inference.tiled import TiledInferencer
    a = _write(tmp_path / 'a.tif')
    coarse = _write(tmp_path / 'coarse.tif', gsd=10.0)
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
        lambda: require('reading rasters', 'no_such_module_xyz'),
        lambda: list_inputs(str(tmp_path / 'empty')),
        lambda: list_inputs(str(tmp_path / 'nope.tif')),
        lambda: InferenceRun(nothing, max_pixels=100,
                             out=str(tmp_path / 'x.png')).run([a]),
        lambda: InferenceRun(nothing, fmt='kml'),
    ]
    messages = []
    for call in calls:
        with pytest.raises(Exception) as e:
            call()
        messages.append(f'{type(e.value).__name__}: {e.value}')
    lines = []
    InferenceRun(TiledInferencer(lambda imgs: [[]][:0], tile=1 << 30),
                 gsd=0.1, out=str(tmp_path / 'p.png'),
                 log=lines.append)._note_source(
                     RasterSource(str(tmp_path / 'plain.tif'), gsd=0.1))
    resolve_gsd('auto', None, lines.append)
    return messages + lines


def test_every_row_is_produced_and_every_message_has_a_row(tmp_path):
    rows = _rows()
    assert len(rows) >= 15
    produced = _produced(tmp_path)
    patterns = [_pattern(r) for r in rows]
    unmatched = [m for m in produced if not any(p.match(m) for p in patterns)]
    assert not unmatched, f'messages without a row in {PAGE}: {unmatched}'
    unused = [r for r, p in zip(rows, patterns)
              if not any(p.match(m) for m in produced)]
    assert not unused, f'rows of {PAGE} no code produced: {unused}'
