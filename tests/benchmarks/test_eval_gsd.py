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
