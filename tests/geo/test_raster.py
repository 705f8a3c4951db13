"""Rasters read window by window with rasterio: georeferencing, bands,
scaling and channel order (the pixels the model sees equal a PNG's through
mmcv, as in training), nodata, the windowed result equal to the in-memory
tiled one, and bad rasters."""
import os
import os.path as osp
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

pytest.importorskip('rasterio')
import rasterio  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from mmretina.deploy.pytorch import PytorchBackend  # noqa: E402
from mmretina.inference.tiled import TiledInferencer
from mmretina.inference.tiled import load_image  # noqa: E402
from mmretina.geo.raster import (  # noqa: E402
    RasterError, RasterSource, drop_nodata_centres, parse_scale, read_georef,
    scale_to_uint8)
from mmretina.inference.tiled import detect_raster  # noqa: E402
from mmretina.geo import raster  # noqa: E402
from mmretina.geo.windows import Window  # noqa: E402

YELL = '2019_YELL_2_541000_4977000_image_crop'
# EPSG:32617 (UTM 17N), 0.1 m pixels, as the DeepForest GeoTIFF
ORIGIN = (404211.9, 3285142.9)


def write_tif(path, bands_chw, nodata=None, crs='EPSG:32617', gsd=0.1,
              block=256):
    """A tiled, deflate-compressed GeoTIFF of B x H x W ``bands_chw``."""
    count, height, width = bands_chw.shape
    with rasterio.open(
            path, 'w', driver='GTiff', width=width, height=height,
            count=count, dtype=bands_chw.dtype, crs=crs, nodata=nodata,
            transform=from_origin(*ORIGIN, gsd, gsd), tiled=True,
            blockxsize=block, blockysize=block, compress='deflate') as ds:
        ds.write(bands_chw)
    return str(path)


@pytest.fixture(scope='module')
def yell_bgr(df_images):
    """A 500 x 420 px part of the YELL image, BGR as mmcv decodes it."""
    return load_image(df_images[YELL + '.png'])[100:520, 200:700].copy()


@pytest.fixture(scope='module')
def yell_tif(yell_bgr, tmp_path_factory):
    """The same pixels as an RGB uint8 GeoTIFF."""
    d = tmp_path_factory.mktemp('yell_tif')
    return write_tif(d / 'yell.tif',
                     np.ascontiguousarray(yell_bgr[..., ::-1].transpose(
                         2, 0, 1)))


def test_georef_of_the_deepforest_geotiff(df_images):
    geo = read_georef(df_images['OSBS_029.tif'])
    assert 'UTM zone 17N' in geo.crs_wkt and geo.gsd == pytest.approx(0.1)
    x, y = geo.apply(np.array([0.0, 400.0]), np.array([0.0, 400.0]))
    assert x == pytest.approx([404211.9, 404251.9], abs=1e-6)
    assert y == pytest.approx([3285142.9, 3285102.9], abs=1e-6)
    assert read_georef(df_images['OSBS_029.png']) is None


def test_georef_matrix_and_pixel_is_point(tmp_path):
    # ModelTransformationTag and GTRasterTypeGeoKey = PixelIsPoint, written
    # by PIL: GDAL shifts the origin to the corner of the pixel
    from PIL import Image, TiffImagePlugin
    info = TiffImagePlugin.ImageFileDirectory_v2()
    m = [2.0, 0.5, 0, 100.0, 0.0, -2.0, 0, 200.0, 0, 0, 0, 0, 0, 0, 0, 1]
    info[34264], info.tagtype[34264] = m, 12
    keys = (1, 1, 0, 3, 1024, 0, 1, 2, 1025, 0, 1, 2, 2048, 0, 1, 4326)
    info[34735], info.tagtype[34735] = keys, 3
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'm.tif',
                                                        tiffinfo=info)
    geo = read_georef(str(tmp_path / 'm.tif'))
    assert 'WGS 84' in geo.crs_wkt
    x, y = geo.apply(np.array([0.5, 1.5]), np.array([0.5, 0.5]))
    assert x == pytest.approx([100.0, 102.0]) and y == pytest.approx(200.0)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'p.tif')
    assert read_georef(str(tmp_path / 'p.tif')) is None


def test_windows_are_the_png_pixels_in_bgr(yell_tif, yell_bgr):
    src = RasterSource(yell_tif)
    assert src.bands == (1, 2, 3) and src.ranges is None
    win = Window(120, 40, 420, 340)
    img, valid = src.read(win)
    assert valid is None
    assert np.array_equal(img, yell_bgr[40:340, 120:420])
    batches = list(src.batches([win, Window(0, 0, 50, 60)], [1, 0], 1))
    assert [b.ids for b in batches] == [[1], [0]]
    assert np.array_equal(batches[0].imgs[0], yell_bgr[:60, :50])


def test_windowed_equals_in_memory_tiled(df_model, yell_bgr, tmp_path):
    # same windows, same pixels (channel order, then the config's mean /
    # std in the data preprocessor), same merge: the same detections
    bgr = yell_bgr[:260, :300]
    tif = write_tif(tmp_path / 'part.tif', np.ascontiguousarray(
        bgr[..., ::-1].transpose(2, 0, 1)), block=128)
    inf = TiledInferencer(PytorchBackend(df_model), tile=160, overlap=0.25,
                          batch_size=4, progress=False)
    ref = inf(np.ascontiguousarray(bgr))
    got = detect_raster(inf, RasterSource(tif), progress=False)
    assert len(got.metainfo['windows']) == len(ref.metainfo['windows']) == 6
    assert len(ref) > 20
    for k in ('bboxes', 'scores', 'labels'):
        assert torch.equal(got[k], ref[k]), k


def test_block_cache_follows_the_internal_tiling(tmp_path):
    # the cache holds the rows of blocks one row of windows spans, plus one:
    # 400 px windows over 512 px blocks span 2 rows -> 3 rows of all bands
    wide = write_tif(tmp_path / 'wide.tif',
                     np.zeros((4, 300, 20000), np.uint16), block=512)
    src = RasterSource(wide, bands=(3, 2, 1))
    row = 20480 * 512 * 4 * 2  # px (whole blocks) x rows x bands x bytes
    assert src.cache_bytes(400) == 3 * row
    assert src.cache_bytes(513) == 3 * row  # at most 2 rows
    assert src.cache_bytes(514) == 4 * row
    small = write_tif(tmp_path / 'small.tif',
                      np.zeros((3, 300, 600), np.uint8), block=256)
    assert RasterSource(small).cache_bytes(400) == raster.MIN_CACHE_BYTES


def test_windows_are_read_with_that_cache(tmp_path, monkeypatch):
    tif = write_tif(tmp_path / 't.tif', np.ones((3, 300, 600), np.uint8))
    src = RasterSource(tif)
    monkeypatch.setattr(raster, 'MIN_CACHE_BYTES', 7 * 2**20)
    seen = []
    read = RasterSource._read

    def spy(self, ds, win):
        seen.append(rasterio.env.getenv().get('GDAL_CACHEMAX'))
        return read(self, ds, win)

    monkeypatch.setattr(RasterSource, '_read', spy)
    windows = [Window(0, 0, 300, 300), Window(300, 0, 600, 300)]
    batches = list(src.batches(windows, [0, 1], batch_size=1))
    assert len(batches) == 2
    assert seen == [7 * 2**20] * 2


def test_scaling_rule():
    arr = np.array([[[0, 1000, 2000, 4000]]], np.uint16)
    out = scale_to_uint8(arr, np.array([[1000.0, 3000.0]]))
    assert out.tolist() == [[[0, 0, 128, 255]]]  # 127.5 rounds to even: 128
    assert parse_scale(['p1,p99']) == ('percentile', 1.0, 99.0)
    assert parse_scale(['0,3000', '0,2800', '10,20']) == [
        (0.0, 3000.0), (0.0, 2800.0), (10.0, 20.0)]
    with pytest.raises(RasterError, match='HI must be > LO'):
        parse_scale(['5,5'])


def test_uint16_four_bands_with_nodata_border(df_model, yell_bgr, tmp_path):
    """Band 1 is noise, bands 2-4 the R, G, B of the PNG times 256 plus 1
    (0 is free for nodata), with a 150 px nodata border on the left:
    --bands 2,3,4 --scale 1,65281 gives the PNG's pixels inside."""
    h, w = yell_bgr.shape[:2]
    rgb = yell_bgr[..., ::-1].transpose(2, 0, 1).astype(np.uint16)
    noise = np.random.RandomState(0).randint(1, 60000, (1, h, w))
    bands = np.concatenate([noise.astype(np.uint16), rgb * 256 + 1])
    bands[:, :, :150] = 0
    path = write_tif(tmp_path / 'four.tif', bands, nodata=0)
    with pytest.raises(RasterError, match='band 5 is out of range .* 4 band'):
        RasterSource(path, bands=(2, 3, 5))
    src = RasterSource(path, bands=(2, 3, 4), scale=['1,65281'])
    assert src.has_nodata
    img, valid = src.read(Window(100, 0, 400, 300))
    assert not valid[:, :50].any() and valid[:, 50:].all()
    assert (img[:, :50] == 0).all()
    assert np.array_equal(img[:, 50:], yell_bgr[:300, 150:400])
    # the default for uint16: per-band 2-98 percentile stretch over the
    # valid pixels only (nodata zeros would pull the low end down)
    auto = RasterSource(path, bands=(2, 3, 4))
    assert (auto.ranges[:, 0] > 1).all()
    assert (auto.ranges[:, 1] < 65281).all()

    class Counting:
        def __init__(self, backend):
            self.backend, self.sizes = backend, []
            self.nms_iou = backend.nms_iou

        def __call__(self, imgs):
            self.sizes.append(len(imgs))
            return self.backend(imgs)

    backend = Counting(PytorchBackend(df_model))
    inf = TiledInferencer(backend, tile=100, overlap=0, batch_size=4,
                          progress=False)
    small = RasterSource(write_tif(tmp_path / 'small.tif',
                                   np.ascontiguousarray(bands[:, :200, :300]),
                                   nodata=0, block=128),
                         bands=(2, 3, 4), scale=['1,65281'])
    res = detect_raster(inf, small, progress=False)
    # 3 x 2 windows of 100 px; the first column (x < 100) is all nodata
    assert res.metainfo['skipped'] == 2 and sum(backend.sizes) == 4
    cx = (res.bboxes[:, 0] + res.bboxes[:, 2]) / 2
    assert len(res) > 0 and (cx >= 150).all()


def test_nodata_only_where_every_band_is_nodata(tmp_path):
    # GDAL's dataset mask: a uint8 RGB raster declaring nodata=255 (the
    # DeepForest wheel's OSBS_029.tif) keeps pixels white in one band
    bands = np.full((3, 4, 6), 100, np.uint8)
    bands[0, 0, 0] = 255  # red saturated: a valid pixel
    bands[:, 1, 1] = 255  # white in every band: nodata
    src = RasterSource(write_tif(tmp_path / 'w.tif', bands, nodata=255))
    img, valid = src.read(Window(0, 0, 6, 4))
    assert valid.sum() == 23 and not valid[1, 1] and valid[0, 0]
    assert img[0, 0].tolist() == [100, 100, 255]  # BGR, untouched
    assert img[1, 1].tolist() == [0, 0, 0]


def test_preview_from_the_windows_is_the_overview(yell_tif):
    # filled window by window (no second pass over the raster), it shows
    # what the decimated read shows: same size and factor, close pixels
    from mmretina.geo.raster import PreviewCanvas
    src = RasterSource(yell_tif)
    ref, f = src.overview(120)
    canvas = PreviewCanvas(src.width, src.height, 120)
    windows = TiledInferencer(lambda imgs: [], tile=160, overlap=0.25,
                              progress=False).windows(src.width, src.height)
    for w in windows:
        canvas.paste(w, src.read(w)[0])
    assert canvas.img.shape == ref.shape and canvas.factor == f
    diff = np.abs(canvas.img.astype(int) - ref.astype(int))
    assert diff.mean() < 25 and (canvas.img > 0).mean() > 0.99


def test_drop_nodata_centres():
    valid = np.zeros((10, 10), bool)
    valid[:, 5:] = True
    boxes = np.array([[0, 0, 4, 4], [3, 0, 9, 4], [6, 6, 20, 20.]])
    assert drop_nodata_centres(boxes, valid).tolist() == [False, True, True]
    # rotated boxes: their (cx, cy), whatever the corners reach
    rboxes = np.array([[4.5, 2, 30, 2, 0.3], [5.2, 2, 30, 2, 0.3],
                       [40, 40, 4, 4, 1.0]])
    assert drop_nodata_centres(rboxes, valid).tolist() == [False, True,
                                                          True]
    assert drop_nodata_centres(np.zeros((0, 5)), valid).tolist() == []


def test_scale_boxes_and_pixels_of_map_coordinates():
    from mmretina.geo.raster import Georef, scale_boxes
    boxes = np.array([[10.0, 20.0, 30.0, 60.0]], np.float32)
    np.testing.assert_array_equal(scale_boxes(boxes, 2.0, 0.5),
                                  [[20.0, 10.0, 60.0, 30.0]])
    # a rotated box: centre by (fx, fy), sides by sqrt(fx fy), angle kept
    rbox = torch.tensor([[10.0, 20.0, 8.0, 4.0, 0.7]])
    np.testing.assert_allclose(scale_boxes(rbox, 2.0, 2.0).numpy(),
                               [[20.0, 40.0, 16.0, 8.0, 0.7]], rtol=1e-7)
    np.testing.assert_allclose(scale_boxes(rbox, 1.0, 4.0).numpy(),
                               [[10.0, 80.0, 16.0, 8.0, 0.7]], rtol=1e-7)
    # Georef.to_pixels inverts Georef.apply (a rotated, sheared transform)
    g = Georef((0.3, 0.2, 500000.0, 0.1, -0.4, 4100000.0), None)
    cols, rows = np.array([0.0, 12.5, 300.0]), np.array([0.0, 7.25, 80.0])
    back = g.to_pixels(*g.apply(cols, rows))
    np.testing.assert_allclose(back, [cols, rows], rtol=0, atol=1e-9)


def test_bad_rasters(tmp_path, yell_bgr):
    text = tmp_path / 'notes.tif'
    text.write_text('not a raster')
    with pytest.raises(RasterError, match='notes.tif: not a raster'):
        RasterSource(str(text))
    # a tiled GeoTIFF cut short: the windows past the cut fail, named
    big = np.tile(yell_bgr[..., ::-1].transpose(2, 0, 1), (1, 3, 3))
    full = write_tif(tmp_path / 'full.tif', np.ascontiguousarray(big))
    data = open(full, 'rb').read()
    cut = tmp_path / 'cut.tif'
    cut.write_bytes(data[:len(data) // 3])
    with pytest.raises(RasterError, match='cut.tif: cannot read .*truncated'):
        src = RasterSource(str(cut))
        windows = [Window(x, y, x + 256, y + 256)
                   for y in range(0, 1024, 256) for x in range(0, 1280, 256)]
        for _ in src.batches(windows, range(len(windows)), 4):
            pass


def _png_header_only(path, width, height, rows):
    """A PNG whose header declares width x height RGB px but whose data
    holds only ``rows`` rows (of zeros): a few kB."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    raw = zlib.compress(b'\0' * ((1 + 3 * width) * rows), 9)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n')
        f.write(chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2,
                                           0, 0, 0)))
        f.write(chunk(b'IDAT', raw))
        f.write(chunk(b'IEND', b''))
    return str(path)


def test_png_declaring_30000_px_a_side(tmp_path):
    path = _png_header_only(tmp_path / 'bomb.png', 30000, 30000, 300)
    assert os.path.getsize(path) < 100_000
    # untiled: refused before decoding, the limit named
    with pytest.raises(ValueError, match='900 megapixels.*--max-pixels'):
        load_image(path)
    # windowed: the header is read, a window costs a window
    src = RasterSource(path)
    assert (src.width, src.height) == (30000, 30000)
    img, _ = src.read(Window(0, 0, 400, 200))
    assert img.shape == (200, 400, 3) and not img.any()
    with pytest.raises(RasterError, match='bomb.png: cannot read window'):
        src.read(Window(0, 20000, 400, 20400))


def test_image_size_reads_headers_only(tmp_path, monkeypatch):
    from PIL import Image
    limit = Image.MAX_IMAGE_PIXELS
    # 225 megapixels declared, past PIL's decompression-bomb limit (179):
    # the header still gives the sides, without GDAL, and decoding it
    # whole is refused from them
    big = _png_header_only(tmp_path / 'big.png', 15000, 15000, 10)
    monkeypatch.setitem(sys.modules, 'rasterio', None)  # no geo extra
    assert raster.image_size(big) == (15000, 15000)
    assert Image.MAX_IMAGE_PIXELS == limit
    with pytest.raises(ValueError, match='225 megapixels, above the limit '
                       'of 200'):
        load_image(big)
    bad = tmp_path / 'photo.jpg'
    bad.write_bytes(b'not a jpeg')
    with pytest.raises(RasterError) as e:
        raster.image_size(str(bad))
    assert str(e.value).startswith(f'{bad}: not an image PIL can read (')
    assert 'rasterio' in str(e.value)
    monkeypatch.delitem(sys.modules, 'rasterio')
    # with GDAL: what PIL cannot read (3 float32 bands), and one message
    # naming the file once with both readers' reasons
    with rasterio.open(tmp_path / 'f.tif', 'w', driver='GTiff', width=7,
                       height=5, count=3, dtype='float32') as ds:
        ds.write(np.zeros((3, 5, 7), np.float32))
    assert raster.image_size(str(tmp_path / 'f.tif')) == (7, 5)
    with pytest.raises(RasterError) as e:
        raster.image_size(str(bad))
    msg = str(e.value)
    assert msg.startswith(f'{bad}: neither PIL (') and ') nor GDAL (' in msg
    assert msg.count(str(bad)) == 1 and 'give a' not in msg
    with pytest.raises(OSError, match=f'cannot decode {bad}: neither PIL'):
        load_image(str(bad))
    with pytest.raises(RasterError, match='nope.png: no such file'):
        raster.image_size(str(tmp_path / 'nope.png'))


def test_import_without_the_geo_extra(tmp_path, df_images):
    # rasterio / geopandas hidden: mmretina imports, a raster feature says
    # which extra to install
    code = (
        'import sys\n'
        'class Block:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name.split(".")[0] in ("rasterio", "geopandas"):\n'
        '            raise ImportError("hidden: " + name)\n'
        'sys.meta_path.insert(0, Block())\n'
        'import mmretina, mmretina.inference, mmretina.geo\n'
        'from mmretina.geo import RasterSource\n'
        'try:\n'
        f'    RasterSource({df_images["OSBS_029.tif"]!r})\n'
        'except ImportError as e:\n'
        '    print("ERR", e)\n')
    env = dict(os.environ, PYTHONPATH=osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))))
    proc = subprocess.run([sys.executable, '-c', code], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'ERR reading rasters needs rasterio (the geo extra): ' \
        'pip install -r requirements/geo.txt' in proc.stdout
