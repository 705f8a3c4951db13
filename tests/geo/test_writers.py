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


def test_one_layer_of_rasters_whose_wkt_differs_but_not_their_crs(tmp_path):
    # GDAL's WKT for EPSG:32617 and for the same zone as a PROJ string:
    # different text, one CRS, one layer in it
    rasterio = pytest.importorskip('rasterio')
    wkts = [rasterio.crs.CRS.from_epsg(32617).to_wkt(),
            rasterio.crs.CRS.from_proj4(
                '+proj=utm +zone=17 +datum=WGS84 +units=m +no_defs').to_wkt()]
    assert wkts[0] != wkts[1]
    georefs = [Georef(_utm().transform, w) for w in wkts]
    frame = detections_frame([RESULT, dict(RESULT, image_path='b.tif')],
                             ('tree', 'snag'), georefs)
    assert len(frame) == 4 and frame.crs.to_epsg() == 32617
    with pytest.raises(ValueError, match='different CRSs'):
        detections_frame([RESULT, RESULT], ('tree', ), [
            georefs[0], Georef(_utm().transform, rasterio.crs.CRS.from_epsg(
                32618).to_wkt())])


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


# ------------------------------------------------------------ rotated boxes
# (cx, cy, w, h, angle) px and radians: 20 x 10 px at 30 degrees, and a
# 16 x 4 px box at -45 degrees
ROTATED = dict(
    image_path='r.tif',
    bboxes=np.array([[40.0, 30.0, 20.0, 10.0, np.pi / 6],
                     [70.0, 50.0, 16.0, 4.0, -np.pi / 4]]),
    scores=np.array([0.9, 0.6]),
    labels=np.array([1, 0]))


def _corners_by_hand(cx, cy, w, h, a):
    """mmrotate's rbox2qbox order: c + u + v, c + u - v, c - u - v,
    c - u + v, with u = w/2 (cos a, sin a), v = h/2 (-sin a, cos a)."""
    import math
    ux, uy = w / 2 * math.cos(a), w / 2 * math.sin(a)
    vx, vy = -h / 2 * math.sin(a), h / 2 * math.cos(a)
    return [(cx + ux + vx, cy + uy + vy), (cx + ux - vx, cy + uy - vy),
            (cx - ux - vx, cy - uy - vy), (cx - ux + vx, cy - uy + vy)]


def test_rotated_corners_by_hand():
    from mmretina.geo.writers import box_outlines
    import math
    ring = box_outlines(ROTATED['bboxes'])
    assert ring.shape == (2, 5, 2)
    # the first box written out: u = (5 sqrt 3, 5), v = (-2.5, 2.5 sqrt 3)
    s3 = math.sqrt(3)
    want = [(40 + 5 * s3 - 2.5, 30 + 5 + 2.5 * s3),
            (40 + 5 * s3 + 2.5, 30 + 5 - 2.5 * s3),
            (40 - 5 * s3 + 2.5, 30 - 5 - 2.5 * s3),
            (40 - 5 * s3 - 2.5, 30 - 5 + 2.5 * s3)]
    np.testing.assert_allclose(ring[0, :4], want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ring[:, 4], ring[:, 0])  # closed
    np.testing.assert_allclose(ring[1, :4],
                               _corners_by_hand(*ROTATED['bboxes'][1]),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize('transform', [
    (0.5, 0.0, 500000.0, 0.0, -0.5, 4100000.0),  # north-up, UTM 33N
    (0.3, 0.2, 500000.0, 0.1, -0.4, 4100000.0),  # rotated and sheared
])
def test_rotated_polygons_through_the_affine_to_1e6_m(tmp_path, transform):
    geopandas = pytest.importorskip('geopandas')
    from pyproj import CRS
    g = Georef(transform, CRS.from_epsg(32633).to_wkt())
    frame = detections_frame([ROTATED], ('ship', 'plane'), [g])
    write_layer(str(tmp_path / 'r.gpkg'), frame)
    gdf = geopandas.read_file(tmp_path / 'r.gpkg')
    assert gdf.crs.to_epsg() == 32633
    assert [c for c in gdf.columns if c != 'geometry'] == [
        'label', 'class_name', 'score', 'source', 'cx', 'cy', 'w', 'h',
        'angle']
    assert gdf['class_name'].tolist() == ['plane', 'ship']
    np.testing.assert_array_equal(
        gdf[['cx', 'cy', 'w', 'h', 'angle']].to_numpy(), ROTATED['bboxes'])
    a, b, c, d, e, f = transform
    for geom, box in zip(gdf.geometry, ROTATED['bboxes']):
        want = [(a * x + b * y + c, d * x + e * y + f)
                for x, y in _corners_by_hand(*box)]
        ring = np.array(geom.exterior.coords)
        assert len(ring) == 5
        np.testing.assert_allclose(ring[:4], want, rtol=0, atol=1e-6)
        # the polygon is the rectangle: area w x h x |det| m^2
        assert geom.area == pytest.approx(box[2] * box[3] * abs(a * e - b * d),
                                          rel=1e-9)


def test_rotated_csv_and_coco_results(tmp_path):
    from mmretina.geo.writers import ROTATED_CSV_HEADER, box_outlines
    write_csv(str(tmp_path / 'r.csv'), [ROTATED], ('ship', 'plane'))
    with open(tmp_path / 'r.csv') as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == ROTATED_CSV_HEADER == (
        'image_path', 'cx', 'cy', 'w', 'h', 'angle', 'label', 'score')
    assert rows[1] == ['r.tif', '40.00', '30.00', '20.00', '10.00',
                       '0.523599', 'plane', '0.90000']
    assert rows[2][5:] == ['-0.785398', 'ship', '0.60000']
    write_coco_json(str(tmp_path / 'r.json'), [ROTATED])
    with open(tmp_path / 'r.json') as f:
        res = json.load(f)
    ring = box_outlines(ROTATED['bboxes'][:1])[0]
    x1, y1 = ring.min(0)
    x2, y2 = ring.max(0)
    assert res[0]['bbox'] == pytest.approx(
        [x1, y1, x2 - x1, y2 - y1], abs=0.006)
    assert res[0]['rbox'] == pytest.approx(
        [40.0, 30.0, 20.0, 10.0, np.pi / 6], abs=1e-6)
    assert res[0]['category_id'] == 2 and res[0]['score'] == 0.9
    # an empty rotated result keeps the rotated header; mixing is refused
    empty = dict(ROTATED, bboxes=np.zeros((0, 5)), scores=np.zeros(0),
                 labels=np.zeros(0, int))
    write_csv(str(tmp_path / 'e.csv'), [empty], ('ship', ))
    with open(tmp_path / 'e.csv') as f:
        assert tuple(next(csv.reader(f))) == ROTATED_CSV_HEADER
    with pytest.raises(ValueError, match='cannot share one file'):
        write_csv(str(tmp_path / 'm.csv'), [RESULT, ROTATED], ('ship', ))
    with pytest.raises(ValueError, match='M x 4 .* or M x 5'):
        write_csv(str(tmp_path / 'b.csv'),
                  [dict(RESULT, bboxes=np.zeros((2, 3)))], ('ship', ))


def test_rotated_boxes_drawn_as_rotated_rectangles(tmp_path):
    import cv2
    from mmretina.geo.writers import draw_detections
    box = np.array([[50.0, 50.0, 60.0, 10.0, np.pi / 4]])
    n = draw_detections(str(tmp_path / 'p.png'), np.zeros((100, 100, 3),
                                                          np.uint8),
                        dict(bboxes=box, scores=[0.9], labels=[0]),
                        ('ship', ), 0.3, palette=[(255, 0, 0)])
    assert n == 1
    drawn = cv2.imread(str(tmp_path / 'p.png'))[..., 2] > 0  # red

    def near(x, y):  # a pixel of the 1 px line within 1 px of (x, y)
        return drawn[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2].any()

    # the long sides run along the diagonal (y down), 5 px from the centre
    # across it: through (50 -+ 5 / sqrt 2, 50 +- 5 / sqrt 2) and 18 px on
    r = 5 / np.sqrt(2)
    for t in (0, 18, -18):
        assert near(50 - r + t, 50 + r + t) and near(50 + r + t, 50 - r + t)
    # the short sides cross the diagonal 30 px from the centre
    assert near(50 + 30 / np.sqrt(2), 50 + 30 / np.sqrt(2))
    # inside, and the enclosing axis-aligned box's corners, stay empty
    assert not near(50, 50) and not near(50 + 12, 50 + 12)
    assert not near(30, 70) and not near(70, 30) and not near(75, 75)
