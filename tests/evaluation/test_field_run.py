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
