"""benchmarks/eval_gsd.py's control: the blur it attributes to the bilinear
rasters is the blur GDAL makes."""
import os.path as osp
import sys

import numpy as np
import pytest

rasterio = pytest.importorskip('rasterio')
from rasterio.transform import from_origin  # noqa: E402

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'benchmarks'))
import eval_gsd  # noqa: E402


@pytest.mark.parametrize('n', [2, 4])
def test_round_trip_kernel_is_gdal_bilinear_then_average(tmp_path, n):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 40, 48)).astype(np.float32)
    src = str(tmp_path / 'a.tif')
    with rasterio.open(src, 'w', driver='GTiff', width=48, height=40,
                       count=1, dtype='float32', crs='EPSG:32617',
                       transform=from_origin(0, 0, 0.1, 0.1)) as ds:
        ds.write(img)
    fine = eval_gsd.resample(src, 0.1 / n, str(tmp_path / 'fine.tif'))
    with rasterio.open(fine) as ds:
        back = ds.read(out_shape=(1, 40, 48),
                       resampling=rasterio.enums.Resampling.average)
    out = eval_gsd.blurred(src, n, str(tmp_path / 'blur.tif'))
    with rasterio.open(out) as ds:
        blur = ds.read()
    # interior pixels (GDAL clamps the edges its own way)
    inner = (slice(None), slice(1, -1), slice(1, -1))
    assert np.abs(back[inner] - blur[inner]).max() < 0.01
    # and the round trip is a blur: far from the image itself
    assert np.abs(back[inner] - img[inner]).mean() > 5


def test_round_trip_kernel_sums_to_one():
    for n in (2, 3, 4, 8):
        k = eval_gsd.round_trip_kernel(n)
        assert k.shape == (3, ) and abs(k.sum() - 1) < 1e-12
    assert np.allclose(eval_gsd.round_trip_kernel(4), [1 / 8, 3 / 4, 1 / 8])


def _raster(path, gsd, h=24, w=32):
    img = np.arange(3 * h * w, dtype=np.uint16).reshape(3, h, w)
    with rasterio.open(path, 'w', driver='GTiff', width=w, height=h,
                       count=3, dtype='uint16', crs='EPSG:32617',
                       transform=from_origin(500, 900, gsd, gsd)) as ds:
        ds.write(img)
    return img


@pytest.mark.parametrize('gsd,k', [(0.1, 1), (0.025, 4)])
def test_offset_crop_drops_whole_model_pixels_and_keeps_the_ground(
        tmp_path, gsd, k):
    img = _raster(str(tmp_path / 'a.tif'), gsd)
    out = eval_gsd.offset_crop(str(tmp_path / 'a.tif'), 2, 1, 0.1,
                               str(tmp_path / 'b.tif'))
    with rasterio.open(out) as ds:
        assert (ds.height, ds.width) == (24 - k, 32 - 2 * k)
        assert np.array_equal(ds.read(), img[:, k:, 2 * k:])
        # the same ground: the first kept pixel sits where it was
        assert ds.transform @ (0, 0) == pytest.approx(
            (500 + 2 * k * gsd, 900 - k * gsd))
        assert ds.crs.to_epsg() == 32617


def test_offset_crop_refuses_a_pixel_that_does_not_divide_the_models(
        tmp_path):
    _raster(str(tmp_path / 'a.tif'), 0.03)
    with pytest.raises(ValueError, match=r'a\.tif.*does not divide'):
        eval_gsd.offset_crop(str(tmp_path / 'a.tif'), 1, 0, 0.1,
                             str(tmp_path / 'b.tif'))


def test_paired_drop_is_the_mean_difference_and_its_standard_error():
    mean, se = eval_gsd.paired_drop([0.4, 0.5, 0.6], [0.3, 0.5, 0.4])
    assert mean == pytest.approx(0.1)
    # differences 0.1, 0.0, 0.2: sd 0.1, n 3
    assert se == pytest.approx(0.1 / np.sqrt(3))
    assert eval_gsd.paired_drop([0.5], [0.4]) == pytest.approx((0.1, 0.0))


def test_offsets_pair_every_version_with_the_original(tmp_path):
    """A real run (a random-weight model of the demo config on a 0.1 m
    raster and a GeoPackage): with --offsets 2 every row is a mean over 4
    offsets, and the nearest-made 0.05 m raster, which read at the model's
    GSD is the original pixel for pixel, drops by exactly 0 at every
    offset: the offsets cut the same ground from both."""
    gpd = pytest.importorskip('geopandas')
    import torch
    from mmdet.apis import init_detector
    from shapely.geometry import box

    import report
    config = osp.join(osp.dirname(eval_gsd.__file__), '..', 'configs',
                      'retinanet_r18_fpn_deepforest.py')
    torch.manual_seed(0)
    model = init_detector(config, None, device='cpu')
    with torch.no_grad():  # random weights, scores about 0.5
        model.bbox_head.retina_cls.bias.fill_(0.0)
    ckpt = str(tmp_path / 'random.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=('tree', )),
                              gsd=0.1)), ckpt)
    rng = np.random.default_rng(0)
    src = str(tmp_path / 'site.tif')
    with rasterio.open(src, 'w', driver='GTiff', width=160, height=160,
                       count=3, dtype='uint8', crs='EPSG:32617',
                       transform=from_origin(500000, 4000000, 0.1, 0.1)) as d:
        d.write(rng.integers(0, 255, (3, 160, 160), dtype=np.uint8))
    xy = rng.uniform(0, 13, (20, 2))
    gpd.GeoDataFrame(geometry=[
        box(500000 + a, 4000000 - b - 3, 500000 + a + 3, 4000000 - b)
        for a, b in xy], crs='EPSG:32617').to_file(tmp_path / 'c.gpkg')
    out = str(tmp_path / 'gsd.json')
    assert eval_gsd.main([config, ckpt, src, str(tmp_path / 'c.gpkg'),
                          '--gsds', '0.05', '--offsets', '2', '--out-dir',
                          str(tmp_path / 'runs'), '--json', out]) == 0
    rec = report.read_record(out)
    rows = {(r[0], r[2]): dict(zip(rec['columns'], r)) for r in rec['rows']}
    original = rows[('site.tif', 'auto')]
    assert float(original['detections >= 0.3']) > 0
    assert original['precision drop'] == original['recall drop'] == '0.000'
    nearest = rows[('site_0.05m_nearest.tif', 'auto')]
    for col in ('precision@0.4', 'recall@0.4', 'mAP50',
                'detections >= 0.3'):
        assert nearest[col] == original[col]
    assert nearest['precision drop se'] == '0.000'
    assert any('mean over 4 offsets' in n for n in rec['notes'])
    # read as it is, the 0.05 m raster is another image to the model
    off = rows[('site_0.05m.tif', 'off')]
    assert [off[c] for c in ('precision@0.4', 'recall@0.4', 'mAP50')] != \
        [original[c] for c in ('precision@0.4', 'recall@0.4', 'mAP50')]

    # --rules auto: no row read as it is; one offset: the columns of old
    assert eval_gsd.main([config, ckpt, src, str(tmp_path / 'c.gpkg'),
                          '--gsds', '0.05', '--rules', 'auto',
                          '--no-controls', '--out-dir',
                          str(tmp_path / 'runs1'), '--json', out]) == 0
    rec = report.read_record(out)
    assert [(r[0], r[2]) for r in rec['rows']] == [
        ('site.tif', 'auto'), ('site_0.05m.tif', 'auto')]
    assert rec['columns'][-1] == 'detections >= 0.3'


def test_offsets_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        eval_gsd.main(['c.py', 'm.pth', 'r.tif', 'l.gpkg', '--offsets', '0'])
    assert '--offsets must be 1 or more' in capsys.readouterr().err
