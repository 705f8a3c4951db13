"""Fixtures of the QGIS plugin tests (helpers in qgis_harness.py); all of
them are skipped where QGIS is not installed."""
import io
import os.path as osp
import shutil
import zipfile

import pytest

from qgis_harness import PLUGIN, QGIS_PROCESS, install


@pytest.fixture(scope='session', autouse=True)
def _qgis_installed():
    # session-scoped and autouse: before the other fixtures of these tests
    if not osp.isfile(QGIS_PROCESS):
        pytest.skip(f'{QGIS_PROCESS} is absent: QGIS is not installed '
                    '(apt-get install qgis python3-qgis); the QGIS plugin '
                    'tests are skipped')


@pytest.fixture(scope='session')
def qgis_profile(tmp_path_factory):
    """A QGIS profile folder with the plugin enabled."""
    profile = tmp_path_factory.mktemp('qgis_profile')
    install(PLUGIN, profile)
    return profile


@pytest.fixture(scope='session')
def osbs(df_images, tmp_path_factory):
    """OSBS_029.tif (EPSG:32617) and its 61 crowns as a GeoPackage in
    EPSG:4326 (a CRS other than the raster's), from the wheel's CSV."""
    gpd = pytest.importorskip('geopandas')
    import pandas as pd
    import rasterio
    from shapely.geometry import box

    from df_fixtures import _wheel
    out = tmp_path_factory.mktemp('osbs')
    tif = out / 'OSBS_029.tif'
    shutil.copy(df_images['OSBS_029.tif'], tif)
    with zipfile.ZipFile(_wheel()) as z:
        rows = pd.read_csv(
            io.BytesIO(z.read('deepforest/data/OSBS_029.csv')))
    with rasterio.open(tif) as r:
        t, crs = r.transform, r.crs
    geoms = []
    for row in rows.itertuples():
        x1, y1 = t @ (row.xmin, row.ymin)
        x2, y2 = t @ (row.xmax, row.ymax)
        geoms.append(box(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))
    labels = out / 'crowns.gpkg'
    gpd.GeoDataFrame(dict(label=list(rows.label)), geometry=geoms,
                     crs=crs).to_crs('EPSG:4326').to_file(labels)
    return str(tif), str(labels)
