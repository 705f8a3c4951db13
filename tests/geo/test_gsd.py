"""Rasters read at the model's ground sample distance: a raster resampled
x2, x4 and x3.33 gives, in map units, the detections of the original
within one pixel of the model's GSD; --gsd off reproduces the collapse
(objects 2-4x larger than the model's scale are missed); GSD in metres
from projected, foot and geographic CRSs."""
import numpy as np
import pytest

pytest.importorskip('rasterio')
geopandas = pytest.importorskip('geopandas')
import rasterio  # noqa: E402
import torch  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from mmretina.inference.tiled import TiledInferencer  # noqa: E402
from mmretina.geo.raster import (RasterError, RasterSource,  # noqa: E402
                                 gsd_metres, parse_gsd)
from mmretina.inference.tiled import detect_raster  # noqa: E402
from mmretina.inference.run import InferenceRun  # noqa: E402
from mmretina.cli.options import model_gsd, model_window, resolve_gsd  # noqa

ORIGIN = (404211.9, 3285142.9)  # EPSG:32617 (UTM 17N), as OSBS_029.tif
GSD = 0.1


class SquareDetector:
    """A detector of one object size, as a trained model is: bright
    squares 14-28 px a side (2 m at 0.1 m) are found, others not."""
    classes = ('square', )

    def __call__(self, imgs):
        import cv2
        out = []
        for img in imgs:
            mask = (img[..., 1] > 128).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, 4)
            boxes = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:]
                     if 14 <= w <= 28 and 14 <= h <= 28]
            inst = InstanceData()
            inst.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(
                -1, 4)
            inst.scores = torch.full((len(boxes), ), 0.9)
            inst.labels = torch.zeros(len(boxes), dtype=torch.long)
            out.append(inst)
        return out


def _scene(size=(360, 440), seed=0):
    """3 x H x W uint8: textured dark ground, 2 m bright squares."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 60, (3, *size), dtype=np.uint8)
    squares = []
    for y in range(15, size[0] - 30, 55):
        for x in range(15 + (y % 20), size[1] - 30, 60):
            img[:, y:y + 20, x:x + 20] = 200
            squares.append((x, y))
    return img, squares


def _write(path, img, gsd, crs='EPSG:32617'):
    with rasterio.open(path, 'w', driver='GTiff', width=img.shape[2],
                       height=img.shape[1], count=3, dtype='uint8', crs=crs,
                       transform=from_origin(*ORIGIN, gsd, gsd)) as ds:
        ds.write(img)
    return str(path)


def _resampled(img, factor):
    """The same ground at GSD / factor (each pixel factor x factor)."""
    import cv2
    h, w = img.shape[1:]
    size = (int(round(w * factor)), int(round(h * factor)))
    return np.stack([cv2.resize(b, size, interpolation=cv2.INTER_NEAREST)
                     for b in img])


def _map_boxes(inst, source):
    """Detections in map units (x1, y_top, x2, y_bottom), sorted."""
    b = inst.bboxes.numpy().astype(np.float64)
    x1, y1 = source.georef.apply(b[:, 0], b[:, 1])
    x2, y2 = source.georef.apply(b[:, 2], b[:, 3])
    boxes = np.stack([x1, y1, x2, y2], 1)
    return boxes[np.lexsort((boxes[:, 0], -boxes[:, 1]))]


@pytest.fixture(scope='module')
def rasters(tmp_path_factory):
    root = tmp_path_factory.mktemp('gsd')
    img, squares = _scene()
    paths = {1.0: _write(root / 'g010.tif', img, GSD)}
    for f in (2.0, 4.0, 10 / 3):
        paths[f] = _write(root / f'g{f:.2f}.tif', _resampled(img, f),
                          GSD / f)
    return paths, squares


def _detect(path, gsd):
    inf = TiledInferencer(SquareDetector(), tile=128, overlap=0.25,
                          batch_size=3, progress=False)
    source = RasterSource(path, gsd=gsd)
    return source, detect_raster(inf, source, progress=False)


@pytest.mark.parametrize('factor', [2.0, 4.0, 10 / 3])
def test_resampled_raster_gives_the_original_detections(rasters, factor):
    paths, squares = rasters
    src0, ref = _detect(paths[1.0], GSD)
    assert not src0.resampled and len(ref.bboxes) == len(squares)
    src, got = _detect(paths[factor], GSD)
    assert src.resampled and src.gsd == GSD
    assert src.resampling == 'average'  # reducing a finer raster
    assert (src.native_width, src.native_height) == \
        rasterio.open(paths[factor]).shape[::-1]
    assert got.metainfo['ori_shape'] == (src.native_height,
                                         src.native_width)
    # boxes come back in the raster's own pixels ...
    assert got.bboxes.max() > 400 * factor * 0.9
    # ... and are, in map units, the original's within a model pixel
    a, b = _map_boxes(ref, src0), _map_boxes(got, src)
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, atol=GSD)


def test_gsd_off_reproduces_the_collapse(rasters):
    paths, squares = rasters
    src0, ref = _detect(paths[1.0], GSD)
    truth = _map_boxes(ref, src0)
    # read at 0.025 m the squares are 80 px: only pieces cut by window
    # edges are found, none of them a square
    src, off = _detect(paths[4.0], None)
    pieces = _map_boxes(off, src)
    assert len(pieces) > 0
    assert not any(np.abs(truth - p).max(1).min() < 10 * GSD
                   for p in pieces)
    src, auto = _detect(paths[4.0], GSD)
    np.testing.assert_allclose(_map_boxes(auto, src), truth, atol=GSD)


def test_coarser_raster_is_enlarged_bilinear(tmp_path):
    img, squares = _scene((360, 440))
    # the model at 0.05 m, the raster at 0.1 m: read enlarged x2
    path = _write(tmp_path / 'r.tif', img, GSD)
    src = RasterSource(path, gsd=GSD / 2)
    assert src.resampling == 'bilinear'
    assert (src.width, src.height) == (880, 720)
    win_img, _ = src.read(src_window(0, 0, 880, 720))
    assert win_img.shape == (720, 880, 3)


def src_window(x0, y0, x1, y1):
    from mmretina.geo.windows import Window
    return Window(x0, y0, x1, y1)


def test_within_tolerance_and_without_crs_read_as_is(tmp_path):
    img, _ = _scene((100, 120))
    near = RasterSource(_write(tmp_path / 'a.tif', img, 0.101), gsd=GSD)
    assert not near.resampled  # 1% off: read as it is
    plain = tmp_path / 'plain.tif'
    with rasterio.open(plain, 'w', driver='GTiff', width=120, height=100,
                       count=3, dtype='uint8') as ds:
        ds.write(img)
    src = RasterSource(str(plain), gsd=GSD)
    assert src.native_gsd is None and not src.resampled
    lines = []
    run = InferenceRun(TiledInferencer(SquareDetector(), tile=128,
                                       progress=False),
                       gsd=GSD, log=lines.append, out=str(tmp_path / 'p.png'))
    run.run([str(plain)])
    assert any('no CRS, so no ground sample distance: read at its own '
               'pixel size' in s for s in lines)


def test_layers_in_map_units_through_the_run(rasters, tmp_path):
    paths, squares = rasters
    layers = {}
    for f in (1.0, 4.0):
        lines = []
        run = InferenceRun(TiledInferencer(SquareDetector(), tile=128,
                                           progress=False),
                           gsd=GSD, out_dir=str(tmp_path / f'o{f}'),
                           log=lines.append)
        run.run([paths[f]])
        name = paths[f].rsplit('/', 1)[1][:-4]
        layers[f] = geopandas.read_file(tmp_path / f'o{f}' / f'{name}.gpkg')
        if f == 4.0:
            assert any('0.025 m pixels read at the model\'s 0.1 m' in s
                       for s in lines)
    assert len(layers[1.0]) == len(layers[4.0]) == len(squares)
    a = np.array(sorted(g.bounds for g in layers[1.0].geometry))
    b = np.array(sorted(g.bounds for g in layers[4.0].geometry))
    np.testing.assert_allclose(b, a, atol=GSD)
    assert layers[4.0].crs.to_epsg() == 32617


def test_gsd_in_metres():
    t = (0.1, 0, 404211.9, 0, -0.1, 3285142.9)
    assert gsd_metres(t, CRS.from_epsg(32617)) == pytest.approx(0.1)
    assert gsd_metres(t, None) is None
    # US survey feet (EPSG:2236, Florida East ftUS): 1 ft = 0.3048006 m
    ft = (1.0, 0, 0, 0, -1.0, 0)
    assert gsd_metres(ft, CRS.from_epsg(2236)) == pytest.approx(0.3048006,
                                                                rel=1e-6)
    # degrees at 29.7 N (OSBS): 1e-6 deg ~ 0.11 m
    geo = (1e-6, 0, -82.0, 0, -1e-6, 29.7)
    m = gsd_metres(geo, CRS.from_epsg(4326))
    lat = np.radians(29.7)
    expected = np.sqrt(1e-12 * 110852.4 * 111412.84 * np.cos(lat))
    assert m == pytest.approx(expected, rel=2e-3)


def test_gsd_flag_and_model_keys():
    assert parse_gsd(None) == 'auto' and parse_gsd('OFF') == 'off'
    assert parse_gsd('0.1') == 0.1
    for bad in ('-1', '0', 'ten'):
        with pytest.raises(RasterError, match='--gsd'):
            parse_gsd(bad)
    lines = []
    assert resolve_gsd('auto', None, lines.append) is None
    assert 'states no ground sample distance' in lines[0]
    assert resolve_gsd('auto', 0.1) == 0.1
    assert resolve_gsd('off', 0.1) is None
    assert resolve_gsd(0.3, 0.1) == 0.3
    from mmengine.config import Config
    cfg = Config.fromfile('configs/retinanet_r18_fpn_deepforest.py')
    assert model_gsd(cfg) == 0.1 and model_window(cfg) == 400
    assert model_window(Config(dict(tile=512))) == 512
    assert model_window(Config.fromfile('configs/retinanet_r50_fpn.py')) \
        == 800


def test_chips_cut_at_a_chosen_gsd(rasters, tmp_path):
    """raster_to_coco --gsd: chips of the x4 raster cut at 0.1 m have the
    boxes of the 0.1 m raster's chips (within a model pixel), their
    GeoTIFFs the chip's transform, and the config lines say gsd."""
    import json
    from shapely.geometry import box
    from mmretina.datasets.converters.raster import (raster_config_lines,
                                                     raster_to_coco)
    paths, squares = rasters
    with rasterio.open(paths[1.0]) as ds:
        t = ds.transform
    polys = [box(*(t * (x, y + 20)), *(t * (x + 20, y)))
             for x, y in squares]
    labels = tmp_path / 'squares.gpkg'
    geopandas.GeoDataFrame({'label': ['square'] * len(polys)},
                           geometry=polys, crs='EPSG:32617').to_file(labels)
    got = {}
    for f, gsd in ((1.0, None), (4.0, GSD)):
        res = raster_to_coco(paths[f], str(labels), str(tmp_path / f'c{f}'),
                             chip=200, gsd=gsd, keep_geo=True,
                             empty_ratio=1.0, log=lambda s: None)
        coco = res['splits']['all']['coco']
        assert coco['info']['gsd'] == pytest.approx(GSD)
        assert 'gsd = 0.1' in raster_config_lines(res)
        got[f] = sorted(
            (im['window'][0] + a['bbox'][0], im['window'][1] + a['bbox'][1],
             a['bbox'][2], a['bbox'][3])
            for im in coco['images'] for a in coco['annotations']
            if a['image_id'] == im['id'] and not a['iscrowd'])
        chip = osp_join(tmp_path / f'c{f}' / 'images',
                        coco['images'][0]['file_name'])
        with rasterio.open(chip) as ds:
            assert ds.res == pytest.approx((GSD, GSD))
            assert ds.width == 200
    assert len(got[1.0]) == len(got[4.0]) > 0
    np.testing.assert_allclose(np.array(got[4.0]), np.array(got[1.0]),
                               atol=1.0)


def osp_join(*parts):
    import os.path as osp
    return osp.join(*(str(p) for p in parts))


def test_field_evaluation_at_the_model_gsd(rasters, tmp_path):
    """mmretina evaluate's rule: the x4 raster read at the model's GSD is
    matched against the labels (in the raster's own pixels) exactly as
    the original is; read as it is, it collapses."""
    from shapely.geometry import box
    from mmretina.evaluation.field_run import FieldEvaluator
    paths, squares = rasters
    with rasterio.open(paths[1.0]) as ds:
        t = ds.transform
    labels = tmp_path / 'squares.gpkg'
    geopandas.GeoDataFrame(
        {'label': ['square'] * len(squares)},
        geometry=[box(*(t * (x, y + 20)), *(t * (x + 20, y)))
                  for x, y in squares],
        crs='EPSG:32617').to_crs('EPSG:4326').to_file(labels)
    inf = TiledInferencer(SquareDetector(), tile=128, progress=False)
    got = {}
    for f, gsd in ((1.0, GSD), (4.0, GSD), (4.0, None)):
        ev = FieldEvaluator(inf, ('square', ), 0.3, 0.4, gsd=gsd,
                            log=lambda s: None)
        images = ev.rasters(paths[f], str(labels))
        got[f, gsd] = ev.write(images, str(tmp_path / f'e{f}{gsd}'))[
            'overall']
    assert got[1.0, GSD]['precision'] == got[1.0, GSD]['recall'] == 1.0
    assert got[4.0, GSD]['precision'] == got[4.0, GSD]['recall'] == 1.0
    assert got[4.0, None]['recall'] == 0.0


def test_far_coarser_raster_is_refused_not_enlarged(tmp_path):
    img, _ = _scene((100, 120))
    path = _write(tmp_path / 'sentinel.tif', img, 10.0)
    with pytest.raises(RasterError, match=r'sentinel.tif: its 10 m pixels '
                       r'would be enlarged 100x .* --gsd off'):
        RasterSource(path, gsd=GSD)
    assert RasterSource(path, gsd=None).width == 120  # --gsd off
    assert RasterSource(path, gsd=2.0).resampled  # 5x: read enlarged


def test_resampling_note_is_one_line_for_every_caller(rasters):
    """The line a run, an evaluation and the chip tool print when a raster
    is read at the model's GSD comes from one method."""
    paths, _ = rasters
    native = RasterSource(paths[1.0], gsd=GSD)
    assert native.resampling_note() is None
    fine = RasterSource(paths[4.0], gsd=GSD)
    note = fine.resampling_note()
    assert note == (f"{paths[4.0]}: 0.025 m pixels read at the model's "
                    f'0.1 m ({fine.width}x{fine.height} px, GDAL average)')
    assert fine.resampling_note('cut into chips at').startswith(
        f'{paths[4.0]}: 0.025 m pixels cut into chips at 0.1 m')
