"""FieldEvaluator: the tiled raster inference, ground truth from a
GeoPackage, sites from a label attribute; the summary agrees with the
matches it writes."""
import csv
import json
import os.path as osp

import numpy as np
import pytest
import torch

gpd = pytest.importorskip('geopandas')
rasterio = pytest.importorskip('rasterio')
from rasterio.transform import from_origin  # noqa: E402
from shapely.geometry import box  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DF_CONFIG = osp.join(REPO, 'configs', 'retinanet_r18_fpn_deepforest.py')


@pytest.fixture(scope='module')
def evaluator():
    from mmdet.apis import init_detector

    import mmretina  # noqa: F401
    from mmretina.deploy.pytorch import PytorchBackend
    from mmretina.inference.tiled import TiledInferencer
    from mmretina.evaluation.field_run import FieldEvaluator
    torch.manual_seed(0)
    model = init_detector(DF_CONFIG, None, device='cpu')
    with torch.no_grad():  # random weights with many detections
        model.bbox_head.retina_cls.bias.fill_(-1.5)
    model.dataset_meta = dict(classes=('tree', ))
    inf = TiledInferencer(PytorchBackend(model), tile=128, overlap=0.25,
                          progress=False)
    # score_thr 0.1: the random detector's scores are around 0.18
    return FieldEvaluator(inf, ('tree', ), score_thr=0.1, iou_thr=0.4,
                          log=lambda *a: None)


def test_sites_from_a_field_and_summary_agrees_with_matches(tmp_path,
                                                            evaluator):
    rng = np.random.default_rng(0)
    frames = []
    for k, (name, site) in enumerate((('p1.tif', 'north'),
                                      ('p2.tif', 'south'))):
        x0, y0 = 500000.0 + 100 * k, 4000000.0
        with rasterio.open(tmp_path / name, 'w', driver='GTiff', width=160,
                           height=160, count=3, dtype='uint8',
                           crs='EPSG:32617',
                           transform=from_origin(x0, y0, 0.1, 0.1)) as d:
            d.write(rng.integers(0, 255, (3, 160, 160), dtype=np.uint8))
        xy = rng.uniform(0, 14, (6, 2))
        frames.append(gpd.GeoDataFrame(
            dict(plot=[site] * 6),
            geometry=[box(x0 + a, y0 - b - 2, x0 + a + 2, y0 - b)
                      for a, b in xy], crs='EPSG:32617'))
    import pandas as pd
    labels = gpd.GeoDataFrame(pd.concat(frames), crs='EPSG:32617')
    labels.to_crs('EPSG:4326').to_file(tmp_path / 'crowns.gpkg')
    images = evaluator.rasters(str(tmp_path), str(tmp_path / 'crowns.gpkg'),
                               site_field='plot')
    assert [m.site for m in images] == ['north', 'south']
    assert [m.n_gt for m in images] == [6, 6]
    assert all(m.n_pred > 0 for m in images)
    # ground truth in pixels: 2 m = 20 px boxes
    assert np.allclose(images[0].gt_boxes[:, 2] - images[0].gt_boxes[:, 0],
                       20, atol=1e-6)
    s = evaluator.write(images, str(tmp_path / 'eval'))
    assert set(s['per_site']) == {'north', 'south'}
    rows = list(csv.DictReader(open(tmp_path / 'eval' / 'matches.csv')))
    precisions, recalls = [], []
    for m in images:
        mine = [r for r in rows if r['image'] == m.name]
        tp = sum(r['status'] == 'tp' for r in mine)
        fp = sum(r['status'] == 'fp' for r in mine)
        miss = sum(r['status'] == 'miss' for r in mine)
        assert tp + miss == 6
        r = s['per_raster'][m.name]
        assert r['recall'] == pytest.approx(tp / 6)
        if tp + fp:
            assert r['precision'] == pytest.approx(tp / (tp + fp))
            precisions.append(tp / (tp + fp))
        recalls.append(tp / 6)
        assert osp.isfile(tmp_path / 'eval' /
                          (osp.splitext(osp.basename(m.name))[0]
                           + '_matches.png'))
    assert s['overall']['recall'] == pytest.approx(np.mean(recalls))
    if precisions:
        assert s['overall']['precision'] == pytest.approx(
            np.mean(precisions))
    assert json.load(open(tmp_path / 'eval' / 'summary.json'))['per_site']


# ------------------------------------------------------------ oriented model
def _oriented_model():
    """The shrunk mmrotate rotated RetinaNet of tests/inference."""
    import sys
    sys.path.insert(0, osp.join(osp.dirname(osp.dirname(
        osp.abspath(__file__))), 'inference'))
    from oriented_model import CLASSES, oriented_model
    return oriented_model(), CLASSES


def test_label_polygons_become_their_min_area_rectangles():
    from shapely.geometry import Point, Polygon

    from mmretina.datasets.converters.raster import Labels
    from mmretina.evaluation.field_run import label_rboxes
    from mmretina.geo.raster import Georef
    from mmretina.structures.rotated import rotated_iou
    from pyproj import CRS
    g = Georef((0.5, 0.0, 500000.0, 0.0, -0.5, 4100000.0),
               CRS.from_epsg(32633).to_wkt())

    def to_map(points):  # raster px -> map
        return Polygon([g.apply(x, y) for x, y in points])

    r = 10 / np.sqrt(2)  # a 10 px square at 45 degrees, centred (50, 60)
    diamond = to_map([(50, 60 - r), (50 + r, 60), (50, 60 + r),
                      (50 - r, 60)])
    # x -10..10 px: half off the raster, clipped to 0..10 as the boxes are
    half = to_map([(-10, 20), (10, 20), (10, 40), (-10, 40)])
    # a triangle whose envelope meets the raster's corner, itself does not
    missing = to_map([(-20, -1), (-1, -20), (-20, -20)])
    labels = Labels(gpd.GeoDataFrame(
        dict(source=['l.gpkg'] * 3, fid=[0, 1, 2]),
        geometry=[diamond, half, missing], crs='EPSG:32633'), 'areal', 0)
    out = label_rboxes(labels, 'r.tif', g, 128, 128)
    assert np.isnan(out[2]).all()
    want = torch.tensor([[50, 60, 10, 10, np.pi / 4], [5, 30, 10, 20, 0]],
                        dtype=torch.float32)
    iou = rotated_iou(torch.from_numpy(out[:2]).float(), want, aligned=True)
    assert iou.tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert out[0, 2:4] == pytest.approx([10, 10], abs=1e-9)
    # points: squares of --point-radius metres (1 m = 2 px a side here)
    points = Labels(gpd.GeoDataFrame(
        dict(source=['p.gpkg'], fid=[0]), geometry=[Point(g.apply(8, 9))],
        crs='EPSG:32633'), 'point', 0)
    (sq, ) = label_rboxes(points, 'r.tif', g, 128, 128, point_radius=1.0)
    assert sq[:4] == pytest.approx([8, 9, 4, 4], abs=1e-9)


def test_oriented_model_evaluated_at_rotated_iou(tmp_path):
    from mmretina.deploy.pytorch import PytorchBackend
    from mmretina.evaluation.field_run import FieldEvaluator
    from mmretina.inference.tiled import TiledInferencer
    from mmretina.structures.rotated import rbox_corners
    model, classes = _oriented_model()
    backend = PytorchBackend(model)
    bgr = np.random.default_rng(7).integers(0, 255, (128, 128, 3),
                                            dtype=np.uint8)
    t = from_origin(500000.0, 4100000.0, 0.5, 0.5)
    tif = str(tmp_path / 'port.tif')
    with rasterio.open(tif, 'w', driver='GTiff', width=128, height=128,
                       count=3, dtype='uint8', crs='EPSG:32633',
                       transform=t) as d:
        d.write(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)))
    ref = backend([bgr])[0]  # the raster is one window
    keep = ref.scores >= 0.5
    boxes, labels = ref.bboxes[keep], ref.labels[keep]
    corners = rbox_corners(boxes.double()).numpy()
    # labels: the rectangles of 5 detections inside the raster (a label is
    # clipped to it), as map polygons, stored in WGS 84 (reprojected back
    # to the raster's CRS by the evaluation)
    inside = np.flatnonzero(((corners > 0) & (corners < 128)).all((1, 2)))
    chosen = inside[:5]
    assert len(boxes) > 8 and len(chosen) == 5
    from shapely.geometry import Polygon
    polys = [Polygon([(t.a * x + t.c, t.e * y + t.f) for x, y in c])
             for c in corners[chosen]]
    gpd.GeoDataFrame(
        dict(label=[classes[i] for i in labels[chosen].tolist()]),
        geometry=polys, crs='EPSG:32633').to_crs('EPSG:4326').to_file(
            tmp_path / 'ships.gpkg')
    ev = FieldEvaluator(TiledInferencer(backend, tile=128, progress=False),
                        classes, score_thr=0.5, log=lambda *a: None)
    (m, ) = ev.rasters(tif, str(tmp_path / 'ships.gpkg'),
                       class_field='label')
    assert m.rotated and m.gt_boxes.shape == (5, 5)
    assert m.n_pred == len(boxes) and m.tp == 5
    assert (m.ious > 0.999).all()
    assert sorted(m.pred_idx.tolist()) == chosen.tolist()
    s = ev.write([m], str(tmp_path / 'eval'))
    assert s['overall']['recall'] == 1.0
    assert s['overall']['precision'] == pytest.approx(5 / len(boxes))
    rows = list(csv.DictReader(open(tmp_path / 'eval' / 'matches.csv')))
    assert 'gt_angle' in rows[0] and 'gt_xmin' not in rows[0]
    # a COCO split of the same image: polygons (DOTA's four corners) give
    # their rectangles, a bbox without one the box at angle 0
    import cv2
    cv2.imwrite(str(tmp_path / 'port.png'), bgr)
    anns = [dict(id=k + 1, image_id=1, category_id=int(labels[i]) + 1,
                 bbox=[0, 0, 1, 1], segmentation=[c.ravel().tolist()],
                 iscrowd=0) for k, (i, c) in enumerate(
                     zip(chosen, corners[chosen]))]
    anns.append(dict(id=9, image_id=1, category_id=1, bbox=[1, 1, 3, 3],
                     iscrowd=0))
    with open(tmp_path / 'val.json', 'w') as f:
        json.dump(dict(images=[dict(id=1, file_name='port.png', width=128,
                                    height=128)], annotations=anns,
                       categories=[dict(id=1, name=classes[0]),
                                   dict(id=2, name=classes[1])]), f)
    (c, ) = ev.coco(str(tmp_path / 'val.json'), str(tmp_path))
    assert c.gt_boxes.shape == (6, 5) and c.tp == 5
    np.testing.assert_allclose(c.gt_boxes[5], [2.5, 2.5, 3, 3, 0])
