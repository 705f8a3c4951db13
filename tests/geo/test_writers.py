"""Result writers: CSV, COCO JSON and GIS layers (georeferencing is read
by mmretina.geo.raster: tests/geo/test_raster.py)."""
import csv
import json
import os

import numpy as np
import pytest

from mmretina.geo.writers import (
    CSV_HEADER, VECTOR_FORMATS, detections_frame, write_coco_json, write_csv,
    write_layer)
from mmretina.geo.raster import Georef

RESULT = dict(
    image_path='a.tif',
    bboxes=np.array([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 5.0, 5.0]]),
    scores=np.array([0.9, 0.4]),
    labels=np.array([0, 1]))


def test_csv_json_geojson(tmp_path):
    classes = ('tree', 'snag')
    write_csv(str(tmp_path / 'd.csv'), [RESULT], classes)
    with open(tmp_path / 'd.csv') as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_HEADER
    assert rows[1] == ['a.tif', '10.00', '20.00', '30.00', '60.00', 'tree',
                       '0.90000']
    assert rows[2][5] == 'snag'
    write_coco_json(str(tmp_path / 'r.json'), [RESULT])
    with open(tmp_path / 'r.json') as f:
        res = json.load(f)
    assert res[0] == dict(image_id=1, category_id=1,
                          bbox=[10.0, 20.0, 20.0, 40.0], score=0.9)
    assert res[1]['category_id'] == 2


UTM = Georef((0.1, 0.0, 1000.0, 0.0, -0.1, 5000.0), None)


def _utm():
    from pyproj import CRS
    return UTM._replace(crs_wkt=CRS.from_epsg(32617).to_wkt())


@pytest.mark.parametrize('fmt', sorted(VECTOR_FORMATS))
def test_layer_in_the_raster_crs(tmp_path, fmt):
    geopandas = pytest.importorskip('geopandas')
    classes = ('tree', 'snag')
    frame = detections_frame([RESULT], classes, [_utm()])
    path = str(tmp_path / ('d' + VECTOR_FORMATS[fmt][1]))
    write_layer(path, frame, fmt, keep_crs=True)
    # nothing but the layer's own files (no temporary folder) is left
    assert all(n.startswith('d.') for n in os.listdir(tmp_path))
    gdf = geopandas.read_file(path)
    columns = [c for c in gdf.columns if c not in ('WKT', 'geometry')]
    assert columns == ['label', 'class_name', 'score',
                                     'source', 'x1', 'y1', 'x2', 'y2']
    assert gdf['class_name'].tolist() == ['tree', 'snag']
    assert gdf['source'].tolist() == ['a.tif', 'a.tif']
    if fmt == 'csv':  # WKT geometry, no CRS
        from shapely import wkt
        geoms = [wkt.loads(g) for g in gdf['WKT']]
    else:
        assert gdf.crs.to_epsg() == 32617
        geoms = list(gdf.geometry)
    xs, ys = np.array(geoms[0].exterior.coords).T
    # box (10, 20, 30, 60) px -> x 1001..1003 m, y 4994..4998 m
    assert xs.min() == pytest.approx(1001.0, abs=1e-6)
    assert xs.max() == pytest.approx(1003.0, abs=1e-6)
    assert ys.min() == pytest.approx(4994.0, abs=1e-6)
    assert ys.max() == pytest.approx(4998.0, abs=1e-6)
    assert float(gdf['x2'][0]) == 30.0 and float(gdf['y2'][0]) == 60.0


def test_geojson_is_rfc7946_unless_keep_crs(tmp_path):
    pytest.importorskip('geopandas')
    from pyproj import Transformer
    frame = detections_frame([RESULT], ('tree', 'snag'), [_utm()])
    write_layer(str(tmp_path / 'g.geojson'), frame, 'geojson')
    with open(tmp_path / 'g.geojson') as f:
        gj = json.load(f)
    assert 'crs' not in gj  # RFC 7946 removed it: WGS 84 lon / lat
    ring = np.array(gj['features'][0]['geometry']['coordinates'][0])
    lon, lat = Transformer.from_crs(32617, 4326, always_xy=True).transform(
        1001.0, 4998.0)
    assert (lon, lat) == pytest.approx(tuple(ring[0]), abs=1e-7)
    write_layer(str(tmp_path / 'k.geojson'), frame, 'geojson', keep_crs=True)
    with open(tmp_path / 'k.geojson') as f:
        gj = json.load(f)
    assert '32617' in json.dumps(gj['crs'])
    assert gj['features'][0]['geometry']['coordinates'][0][0] == \
        pytest.approx([1001.0, 4998.0])


def test_layer_without_crs_holds_pixels_and_empty_layer(tmp_path):
    geopandas = pytest.importorskip('geopandas')
    frame = detections_frame([RESULT], ('tree', 'snag'), [None])
    assert frame.crs is None
    assert frame.geometry[0].bounds == (10.0, 20.0, 30.0, 60.0)
    empty = detections_frame([dict(RESULT, bboxes=np.zeros((0, 4)),
                                   scores=np.zeros(0),
                                   labels=np.zeros(0, int))],
                             ('tree', ), [_utm()])
    write_layer(str(tmp_path / 'e.gpkg'), empty)
    gdf = geopandas.read_file(tmp_path / 'e.gpkg')
    assert len(gdf) == 0 and gdf.crs.to_epsg() == 32617
    with pytest.raises(ValueError, match='different CRSs'):
        detections_frame([RESULT, RESULT], ('tree', ), [_utm(), None])


def _tif(path, crs='EPSG:32617'):
    rasterio = pytest.importorskip('rasterio')
    from rasterio.transform import from_origin
    rng = np.random.RandomState(0)
    with rasterio.open(path, 'w', driver='GTiff', width=120, height=80,
                       count=3, dtype='uint8', crs=crs,
                       transform=from_origin(1000.0, 5000.0, 0.1, 0.1)) as ds:
        ds.write(rng.randint(0, 255, (3, 80, 120), dtype=np.uint8))
    return str(path)


def test_layers_drawn_over_the_raster_in_map_coordinates(tmp_path):
    from mmretina.geo.writers import plot_layer_on_raster
    tif = _tif(tmp_path / 'r.tif')
    frame = detections_frame([RESULT], ('tree', 'snag'), [_utm()])

    def png(name, layers, **kw):
        path = str(tmp_path / name)
        counts = plot_layer_on_raster(path, tif, layers, **kw)
        with open(path, 'rb') as f:
            return counts, f.read()

    counts, utm = png('utm.png', [(frame, 'det', 'red')])
    assert counts == [2]
    # the same boxes stored in lon / lat are reprojected to the raster's CRS
    frame.to_crs('EPSG:4326').to_file(tmp_path / 'd.gpkg')
    _, lonlat = png('lonlat.png', [(str(tmp_path / 'd.gpkg'), 'det', 'red')])
    assert lonlat == utm
    # ... and the picture shows where they are: 1 m east is another picture
    shifted = frame.set_geometry(frame.translate(xoff=1.0))
    _, moved = png('moved.png', [(shifted, 'det', 'red')])
    assert moved != utm
    counts, _ = png('thr.png', [(frame, 'det', 'red')], score_thr=0.5)
    assert counts == [1]


def test_map_plot_of_a_raster_without_crs(tmp_path):
    pytest.importorskip('rasterio')
    from PIL import Image

    from mmretina.geo.writers import plot_layer_on_raster
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / 'p.png')
    frame = detections_frame([RESULT], ('tree', 'snag'), [_utm()])
    with pytest.raises(ValueError, match='p.png: the raster has no CRS'):
        plot_layer_on_raster(str(tmp_path / 'm.png'),
                             str(tmp_path / 'p.png'), [(frame, 'd', 'red')])
    assert not (tmp_path / 'm.png').exists()
