"""Result writers and the GeoTIFF geotransform reader."""
import csv
import json

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from mmretina.apis.outputs import (CSV_HEADER, GeoTransform, read_geotransform,
                                   write_coco_json, write_csv, write_geojson)

RESULT = dict(
    image_path='a.tif',
    bboxes=np.array([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 5.0, 5.0]]),
    scores=np.array([0.9, 0.4]),
    labels=np.array([0, 1]))


def test_geotransform_of_the_deepforest_geotiff(df_images):
    geo = read_geotransform(df_images['OSBS_029.tif'])
    # ModelTiepoint (0, 0) -> (404211.9, 3285142.9), 0.1 m pixels, UTM 17N
    assert geo.epsg == 32617
    assert geo.a == pytest.approx(0.1) and geo.e == pytest.approx(-0.1)
    assert geo.b == 0 and geo.d == 0
    x, y = geo.apply(np.array([0.0, 400.0]), np.array([0.0, 400.0]))
    assert x == pytest.approx([404211.9, 404251.9])
    assert y == pytest.approx([3285142.9, 3285102.9])
    # a PNG, a missing georeference: None
    assert read_geotransform(df_images['OSBS_029.png']) is None


def _tiff(path, tags):
    info = TiffImagePlugin.ImageFileDirectory_v2()
    for tag, (value, typ) in tags.items():
        info[tag] = value
        info.tagtype[tag] = typ
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
        path, tiffinfo=info)
    return str(path)


def test_geotransform_matrix_and_pixel_is_point(tmp_path):
    double, short = 12, 3
    m = [2.0, 0.5, 0, 100.0, 0.0, -2.0, 0, 200.0, 0, 0, 0, 0, 0, 0, 0, 1]
    # GeoKeys: version 1.1.0, 2 keys: raster type 1025 = 2 (PixelIsPoint),
    # geographic CRS 2048 = 4326
    keys = (1, 1, 0, 2, 1025, 0, 1, 2, 2048, 0, 1, 4326)
    path = _tiff(tmp_path / 'm.tif', {34264: (m, double),
                                      34735: (keys, short)})
    geo = read_geotransform(path)
    assert geo.epsg == 4326
    # pixel centre (0.5, 0.5) is the matrix origin
    x, y = geo.apply(np.array([0.5]), np.array([0.5]))
    assert (x[0], y[0]) == pytest.approx((100.0, 200.0))
    x, y = geo.apply(np.array([1.5]), np.array([0.5]))
    assert (x[0], y[0]) == pytest.approx((102.0, 200.0))
    # a plain TIFF
    assert read_geotransform(_tiff(tmp_path / 'plain.tif', {})) is None
    bad = _tiff(tmp_path / 'bad.tif', {34264: ([1.0, 2.0], double)})
    with pytest.raises(ValueError, match='16'):
        read_geotransform(bad)


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
    geo = GeoTransform(0.1, 0, 1000.0, 0, -0.1, 5000.0, 32617)
    write_geojson(str(tmp_path / 'g.geojson'), RESULT, geo, classes)
    with open(tmp_path / 'g.geojson') as f:
        gj = json.load(f)
    assert gj['crs']['properties']['name'] == 'urn:ogc:def:crs:EPSG::32617'
    feat = gj['features'][0]
    assert feat['properties']['label'] == 'tree'
    ring = np.array(feat['geometry']['coordinates'][0])
    assert ring.shape == (5, 2) and (ring[0] == ring[-1]).all()
    assert ring[:, 0].min() == pytest.approx(1001.0)
    assert ring[:, 0].max() == pytest.approx(1003.0)
    assert ring[:, 1].max() == pytest.approx(4998.0)
    assert ring[:, 1].min() == pytest.approx(4994.0)
