"""Rasters + vector labels -> COCO chips, on real GeoTIFFs and GeoPackages
written by rasterio / geopandas in a temp dir."""
import json
import os
import os.path as osp

import numpy as np
import pytest

gpd = pytest.importorskip('geopandas')
rasterio = pytest.importorskip('rasterio')
from rasterio.transform import from_origin  # noqa: E402
from shapely.geometry import Point, Polygon, box  # noqa: E402

from mmretina.datasets.converters.raster import (  # noqa: E402
    ConversionError, assign_splits, chip_boxes, parse_length,
    parse_split, raster_config_lines, raster_to_coco)
from mmretina.geo.windows import Window  # noqa: E402

# a 0.1 m raster in UTM 17N (OSBS, Florida)
ORIGIN = (403000.0, 3285000.0)
GSD = 0.1


def write_raster(path, width=300, height=200, crs='EPSG:32617', count=3,
                 dtype='uint8', seed=0, nodata=None):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in 'ui' else None
    hi = 255 if info is None else min(info.max, 4000)
    data = rng.integers(1, hi, (count, height, width)).astype(dtype)
    profile = dict(driver='GTiff', width=width, height=height, count=count,
                   dtype=dtype, transform=from_origin(*ORIGIN, GSD, GSD))
    if crs:
        profile['crs'] = crs
    if nodata is not None:
        profile['nodata'] = nodata
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(data)
    return str(path)


def to_map(px_boxes):
    """Pixel boxes -> polygons (their four corners) in EPSG:32617."""
    out = []
    for x1, y1, x2, y2 in px_boxes:
        corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        out.append(Polygon([(ORIGIN[0] + c * GSD, ORIGIN[1] - r * GSD)
                            for c, r in corners]))
    return out


def write_labels(path, px_boxes, crs='EPSG:4326', labels=None, **cols):
    frame = gpd.GeoDataFrame(
        dict(species=labels or ['pine'] * len(px_boxes), **cols),
        geometry=to_map(px_boxes), crs='EPSG:32617')
    if crs != 'EPSG:32617':
        frame = frame.to_crs(crs)
    frame.to_file(path)
    return str(path)


BOXES = np.array([
    [10.3, 12.7, 40.1, 45.9],  # inside chip (0, 0)
    [120.2, 30.5, 150.8, 60.1],  # inside chip (100, 0)
    [190.0, 20.0, 210.0, 60.0],  # cut by x=200: half in each chip
    [95.0, 150.0, 135.0, 190.0],  # 12.5 % left of x=100
    [250.5, 105.5, 280.5, 140.5],
])


def run(tmp_path, raster, labels, **kw):
    kw.setdefault('log', lambda *a: None)
    return raster_to_coco(raster, labels, str(tmp_path / 'out'), **kw)


def test_epsg4326_labels_round_trip_to_pixel_boxes(tmp_path):
    raster = write_raster(tmp_path / 'r.tif')
    labels = write_labels(tmp_path / 'l.gpkg', BOXES)
    assert gpd.read_file(labels).crs.to_epsg() == 4326
    res = run(tmp_path, raster, labels, chip=100, overlap=0,
              empty_ratio=1.0, min_visible=0.5)
    coco = json.load(open(res['splits']['all']['path']))
    assert len(coco['images']) == 6  # 3 x 2 chips of 100 px
    found = []
    for im in coco['images']:
        x0, y0, x1, y1 = im['window']
        assert (im['width'], im['height']) == (x1 - x0, y1 - y0)
        for a in coco['annotations']:
            if a['image_id'] == im['id'] and not a['iscrowd']:
                x, y, w, h = a['bbox']
                found.append([x + x0, y + y0, x + w + x0, y + h + y0])
    found = np.array(found)
    # every box (clipped to its chips) is there within 0.5 px
    for b in BOXES:
        hits = [f for f in found if np.abs(f[:2] - b[:2]).max() < 0.5
                or np.abs(f[2:] - b[2:]).max() < 0.5]
        assert hits, b
    # whole boxes exactly
    for b in BOXES[[0, 1, 4]]:
        assert np.abs(found - b).max(axis=1).min() < 0.5
    # the box cut in two halves: two clipped boxes, both kept (0.5)
    assert np.abs(found - [190, 20, 200, 60]).max(axis=1).min() < 0.5
    assert np.abs(found - [200, 20, 210, 60]).max(axis=1).min() < 0.5
    # 12.5 % visible: an ignore region in the left chip, kept in the right
    crowd = [a for a in coco['annotations'] if a['iscrowd']]
    assert len(crowd) == 1
    im = coco['images'][crowd[0]['image_id'] - 1]
    assert im['window'][:2] == [0, 100]
    assert np.allclose(crowd[0]['bbox'], [95, 50, 5, 40], atol=0.5)
    # the chips' pixels are the raster's
    with rasterio.open(raster) as ds:
        arr = ds.read()
    import cv2
    chip = cv2.imread(osp.join(res['img_dir'], im['file_name']))
    x0, y0, x1, y1 = im['window']
    assert np.array_equal(chip[..., ::-1].transpose(2, 0, 1),
                          arr[:, y0:y1, x0:x1])


def test_spatial_splits_share_no_pixel(tmp_path):
    raster = write_raster(tmp_path / 'r.tif', width=640, height=480)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 600, (60, 2)) * [1, 0.75]
    boxes = np.concatenate([xy, xy + 20], 1)
    labels = write_labels(tmp_path / 'l.gpkg', boxes)
    res = run(tmp_path, raster, labels, chip=64, overlap=0.5,
              split='train=0.6,val=0.2,test=0.2', block='8m',
              empty_ratio=10)
    wins = {}
    for name, o in res['splits'].items():
        coco = json.load(open(o['path']))
        wins[name] = np.array([im['window'] for im in coco['images']])
        assert len(wins[name]), name
    names = list(wins)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            A, B = wins[a][:, None], wins[b][None]
            share = ((A[..., 0] < B[..., 2]) & (B[..., 0] < A[..., 2])
                     & (A[..., 1] < B[..., 3]) & (B[..., 1] < A[..., 3]))
            assert not share.any(), (a, b)
    assert any('block edges' in k and v for k, v in res['report'].items())


def test_points_with_radius_and_class_field(tmp_path):
    raster = write_raster(tmp_path / 'r.tif')
    pts = gpd.GeoDataFrame(
        dict(kind=['oak', 'pine']),
        geometry=[Point(ORIGIN[0] + 5.0, ORIGIN[1] - 5.0),
                  Point(ORIGIN[0] + 20.0, ORIGIN[1] - 10.0)],
        crs='EPSG:32617').to_crs('EPSG:4326')
    pts.to_file(tmp_path / 'p.geojson')
    with pytest.raises(ConversionError, match='--point-radius'):
        run(tmp_path, raster, str(tmp_path / 'p.geojson'))
    with pytest.raises(ConversionError, match="no attribute 'species'.*kind"):
        run(tmp_path, raster, str(tmp_path / 'p.geojson'),
            point_radius=1.0, class_field='species')
    res = run(tmp_path, raster, str(tmp_path / 'p.geojson'),
              point_radius=1.0, class_field='kind', chip=300)
    coco = res['splits']['all']['coco']
    assert [c['name'] for c in coco['categories']] == ['oak', 'pine']
    boxes = sorted(a['bbox'] for a in coco['annotations'])
    # 1 m = 10 px each side of (50, 50) and (200, 100)
    assert np.allclose(boxes, [[40, 40, 20, 20], [190, 90, 20, 20]],
                       atol=0.01)


def test_bad_inputs_name_the_file_and_feature(tmp_path):
    raster = write_raster(tmp_path / 'r.tif')
    # labels far away: both extents and CRSs in the message
    far = gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs='EPSG:4326')
    far.to_file(tmp_path / 'far.gpkg')
    with pytest.raises(ConversionError) as e:
        run(tmp_path, raster, str(tmp_path / 'far.gpkg'))
    msg = str(e.value)
    assert 'far.gpkg' in msg and 'r.tif' in msg
    assert 'EPSG:4326' in msg and 'EPSG:32617' in msg
    assert '403000' in msg and 'x 0..1' in msg
    # an empty layer
    empty = gpd.GeoDataFrame(dict(species=[]), geometry=[],
                             crs='EPSG:4326')
    empty.to_file(tmp_path / 'empty.gpkg')
    with pytest.raises(ConversionError, match='empty.gpkg: the layer has no '
                       'feature'):
        run(tmp_path, raster, str(tmp_path / 'empty.gpkg'))
    # mixed geometry types
    mixed = gpd.GeoDataFrame(geometry=to_map(BOXES[:1]) + [
        Point(ORIGIN[0] + 1, ORIGIN[1] - 1)], crs='EPSG:32617')
    mixed.to_file(tmp_path / 'mixed.gpkg')
    with pytest.raises(ConversionError, match='mixed.gpkg: mixed geometry'):
        run(tmp_path, raster, str(tmp_path / 'mixed.gpkg'))
    # a raster without CRS given map labels
    nocrs = write_raster(tmp_path / 'nocrs.tif', crs=None)
    labels = write_labels(tmp_path / 'l.gpkg', BOXES)
    with pytest.raises(ConversionError, match='nocrs.tif: the raster has no '
                       'CRS but the labels .*EPSG:4326'):
        run(tmp_path, nocrs, labels)
    # an unknown class
    with pytest.raises(ConversionError, match="feature 0 has class 'pine', "
                       'not in --classes'):
        run(tmp_path, raster, labels, class_field='species',
            classes=['oak'])


def test_invalid_geometries_are_repaired_and_counted(tmp_path):
    raster = write_raster(tmp_path / 'r.tif')
    x, y = ORIGIN[0] + 2, ORIGIN[1] - 2
    # a bow tie (self-intersecting) crown
    bow = Polygon([(x, y), (x + 3, y - 3), (x + 3, y), (x, y - 3)])
    frame = gpd.GeoDataFrame(geometry=[bow] + to_map(BOXES[:1]),
                             crs='EPSG:32617')
    assert not frame.geometry.is_valid.all()
    frame.to_file(tmp_path / 'bow.gpkg')
    lines = []
    res = raster_to_coco(raster, str(tmp_path / 'bow.gpkg'),
                         str(tmp_path / 'out'), chip=300, log=lines.append)
    assert res['report']['invalid geometries repaired'] == 1
    assert any('bow.gpkg: 1 invalid geometry (features [0]) repaired' in s
               for s in lines)
    boxes = sorted(a['bbox'] for a in res['splits']['all']['coco'][
        'annotations'])
    assert np.allclose(boxes[1], [20, 20, 30, 30], atol=0.01)


def test_labels_outside_every_raster_are_counted(tmp_path):
    raster = write_raster(tmp_path / 'r.tif')
    boxes = np.concatenate([BOXES, [[1000, 1000, 1020, 1020]]])
    labels = write_labels(tmp_path / 'l.gpkg', boxes)
    lines = []
    res = raster_to_coco(raster, labels, str(tmp_path / 'out'), chip=300,
                         log=lines.append)
    assert res['report']['labels outside every raster'] == 1
    assert any('1 of 6 labels lie outside every raster' in s and 'l.gpkg:5'
               in s for s in lines)


def test_uint16_chips_follow_the_inference_scaling_rule(tmp_path):
    from mmretina.geo.raster import RasterSource
    raster = write_raster(tmp_path / 'r.tif', count=4, dtype='uint16')
    labels = write_labels(tmp_path / 'l.gpkg', BOXES)
    res = run(tmp_path, raster, labels, chip=300, bands=(4, 3, 2),
              keep_geo=True)
    im = res['splits']['all']['coco']['images'][0]
    src = RasterSource(raster, (4, 3, 2))
    want, _ = src.read(Window(0, 0, 300, 200))
    with rasterio.open(osp.join(res['img_dir'], im['file_name'])) as ds:
        got = ds.read()
        assert ds.crs.to_epsg() == 32617
        assert ds.transform == from_origin(*ORIGIN, GSD, GSD)
    assert np.array_equal(got, want[..., ::-1].transpose(2, 0, 1))


def test_chip_boxes_min_visible_and_helpers():
    b = np.array([[0, 0, 10, 10], [95, 0, 105, 10], [60, 60, 140, 70]],
                 float)
    out, idx, crowd, rep = chip_boxes(b, Window(0, 0, 100, 100), 0.5)
    assert idx.tolist() == [0, 1, 2]
    assert crowd.tolist() == [False, False, False]  # 50 %, 50 %
    out, idx, crowd, rep = chip_boxes(b, Window(0, 0, 100, 100), 0.6)
    assert crowd.tolist() == [False, True, True]
    assert np.allclose(out[1], [95, 0, 100, 10])
    assert parse_length('50m') == (50.0, 'm')
    assert parse_length('512') == (512.0, 'px')
    with pytest.raises(ConversionError):
        parse_split('train=0.5,val=0.2')
    s = assign_splits([(0, i, 0) for i in range(10)],
                      parse_split('train=0.8,val=0.2'))
    assert sorted(s.values()).count('val') == 2


def test_cli_prints_config_lines(tmp_path):
    import subprocess
    import sys
    raster = write_raster(tmp_path / 'r.tif')
    labels = write_labels(tmp_path / 'l.gpkg', BOXES)
    root = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))))
    proc = subprocess.run(
        [sys.executable, osp.join(root, 'tools', 'dataset_converters',
                                  'raster_to_coco.py'), raster, labels,
         '--out-dir', str(tmp_path / 'o'), '--chip', '100',
         '--split', 'train=0.5,val=0.5', '--block', '100px'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(__import__('os').environ, PYTHONPATH=root), timeout=300)
    assert proc.returncode == 0, proc.stdout
    assert "classes = ('object',)" in proc.stdout
    assert 'train_ann' in proc.stdout and 'ignore_iof_thr' in proc.stdout
    assert 'mmretina.CocoDataset loads it' in proc.stdout


def test_ignore_regions_reach_the_assigner_as_ignored(tmp_path):
    """iscrowd=1 -> mmretina.CocoDataset ignore_flag -> PackDetInputs'
    ignored_instances -> anchors on it neither positive nor negative."""
    import copy

    import torch
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmretina.datasets import CocoDataset
    from mmretina.registry import MODELS
    register_all_modules(init_default_scope=False)
    raster = write_raster(tmp_path / 'r.tif', width=200, height=100)
    # the second box is 40 % inside the first chip: an ignore region there
    labels = write_labels(tmp_path / 'l.gpkg',
                          [[10, 10, 50, 50], [60, 10, 160, 90]])
    res = run(tmp_path, raster, labels, chip=100, empty_ratio=1.0)
    ds = CocoDataset(
        ann_file=res['splits']['all']['path'], data_root='',
        data_prefix=dict(img=res['img_dir'] + '/'),
        metainfo=dict(classes=('object', )),
        pipeline=[dict(type='mmretina.LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='PackDetInputs')])
    i = next(k for k in range(len(ds))
             if ds.get_data_info(k)['img_path'].endswith('_x0_y0.png'))
    sample = ds[i]['data_samples']
    ignore = sample.ignored_instances.bboxes.tensor
    assert np.allclose(ignore.numpy(), [[60, 10, 100, 90]], atol=0.5)
    assert np.allclose(sample.gt_instances.bboxes.tensor.numpy(),
                       [[10, 10, 50, 50]], atol=0.5)

    cfg = Config.fromfile(osp.join(
        osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(
            __file__))))), 'configs', 'retinanet_r50_fpn_gis_pretrained.py'))
    head_cfg = cfg.model.bbox_head
    head = MODELS.build(dict(head_cfg, train_cfg=cfg.model.train_cfg))
    sizes = [(100 // s + 1, 100 // s + 1) for s in (8, 16, 32, 64, 128)]
    anchors = torch.cat(head.prior_generator.grid_priors(sizes, device='cpu'))
    # anchors lying mostly (IoF > 0.5) on the ignore region
    x1 = torch.maximum(anchors[:, 0], ignore[0, 0])
    y1 = torch.maximum(anchors[:, 1], ignore[0, 1])
    x2 = torch.minimum(anchors[:, 2], ignore[0, 2])
    y2 = torch.minimum(anchors[:, 3], ignore[0, 3])
    inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    area = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    on_ignore = inter / area > 0.5
    # a ground truth elsewhere so the image has positives too
    from mmengine.structures import InstanceData
    gt = InstanceData(bboxes=sample.gt_instances.bboxes.tensor,
                      labels=sample.gt_instances.labels)
    metas = [dict(img_shape=(100, 100))]
    valid = torch.ones(1, len(anchors), dtype=torch.bool)
    for thr, expect_ignored in ((0.5, True), (-1, False)):
        train_cfg = copy.deepcopy(cfg.model.train_cfg)
        train_cfg.assigner.ignore_iof_thr = thr
        head = MODELS.build(dict(head_cfg, train_cfg=train_cfg))
        # the head's own path (the windowed assignment near each box)
        t = head.get_targets(anchors, valid, [gt], metas,
                             [InstanceData(bboxes=ignore)],
                             featmap_sizes=sizes)
        w = t.label_weights[0, on_ignore]
        assert on_ignore.sum() > 0
        assert not (t.labels[0, on_ignore] == 0).any()  # never positive
        if expect_ignored:
            assert (w == 0).all()  # nor negative
        else:
            assert (w == 1).all()  # without ignore: background


def test_csv_of_pairs_and_csv_labels_in_map_coordinates(tmp_path):
    # two rasters, each with its own labels: a CSV of map-coordinate boxes
    # (EPSG:32617, given by label_crs) and a GeoPackage in EPSG:4326
    write_raster(tmp_path / 'a.tif')
    write_raster(tmp_path / 'b.tif', seed=1)
    with open(tmp_path / 'a_boxes.csv', 'w') as f:
        f.write('xmin,ymin,xmax,ymax,species\n')
        for x1, y1, x2, y2 in BOXES[:2]:
            f.write(f'{ORIGIN[0] + x1 * GSD},{ORIGIN[1] - y2 * GSD},'
                    f'{ORIGIN[0] + x2 * GSD},{ORIGIN[1] - y1 * GSD},oak\n')
    write_labels(tmp_path / 'b.gpkg', BOXES[2:3], labels=['oak'])
    with open(tmp_path / 'pairs.csv', 'w') as f:
        f.write('raster,labels\na.tif,a_boxes.csv\nb.tif,b.gpkg\n')
    with pytest.raises(ConversionError, match='a_boxes.csv: the labels have '
                       'no CRS.*--label-crs'):
        run(tmp_path, str(tmp_path / 'pairs.csv'), None)
    res = run(tmp_path, str(tmp_path / 'pairs.csv'), None, chip=300,
              label_crs='EPSG:32617', class_field='species')
    coco = res['splits']['all']['coco']
    by_raster = {}
    for a in coco['annotations']:
        im = coco['images'][a['image_id'] - 1]
        x, y, w, h = a['bbox']
        by_raster.setdefault(osp.basename(im['raster']), []).append(
            [x, y, x + w, y + h])
    assert np.allclose(sorted(by_raster['a.tif']), BOXES[:2], atol=0.01)
    assert np.allclose(by_raster['b.tif'], BOXES[2:3], atol=0.01)
    assert [c['name'] for c in coco['categories']] == ['oak']


# --rotated: oriented rectangles in the raster's pixels, exact
RBOXES = np.array([  # (cx, cy, w, h, angle) in raster px, le90
    [100.25, 80.5, 60.0, 20.0, 0.5],
    [300.3, 150.7, 40.0, 12.0, -1.0],
    [420.0, 230.0, 30.0, 30.0, 0.2],
    [250.0, 40.0, 50.0, 8.0, 1.2],  # crosses the chip edge x = 244
])
# a north-up 0.1 m UTM raster, the same rotated by 30 degrees, a 1e-6
# degree (about 0.1 m) raster in EPSG:4326 (Florida)
_C, _S = np.cos(np.pi / 6), np.sin(np.pi / 6)
TRANSFORMS = {
    'utm': ('EPSG:32617', (GSD, 0, ORIGIN[0], 0, -GSD, ORIGIN[1])),
    'utm-rotated': ('EPSG:32617', (GSD * _C, GSD * _S, ORIGIN[0],
                                   GSD * _S, -GSD * _C, ORIGIN[1])),
    'epsg4326': ('EPSG:4326', (1e-6, 0, -82.0, 0, -1e-6, 29.7)),
}


def rotated_case(tmp_path, raster_kind, label_crs, objects=RBOXES,
                 labels=None):
    """A 500 x 300 raster and a layer whose features are ``objects``'
    corners (raster px) mapped to map coordinates, then to ``label_crs``."""
    import torch
    from rasterio.transform import Affine

    from mmretina.structures.rotated import rbox_corners
    crs, t = TRANSFORMS[raster_kind]
    data = np.random.default_rng(0).integers(1, 255, (3, 300, 500))
    path = str(tmp_path / 'r.tif')
    with rasterio.open(path, 'w', driver='GTiff', width=500, height=300,
                       count=3, dtype='uint8', crs=crs,
                       transform=Affine(*t)) as dst:
        dst.write(data.astype('uint8'))
    corners = rbox_corners(torch.from_numpy(objects)).numpy()
    a, b, c, d, e, f = t
    polys = [Polygon([(a * x + b * y + c, d * x + e * y + f)
                      for x, y in q]) for q in corners]
    names = labels or ['ship'] * (len(objects) - 1) + ['plane']
    layer = gpd.GeoDataFrame(dict(kind=names), geometry=polys, crs=crs)
    if label_crs != crs:
        layer = layer.to_crs(label_crs)
    layer.to_file(str(tmp_path / 'l.gpkg'))
    return path, str(tmp_path / 'l.gpkg'), corners.reshape(-1, 8)


def read_rotated_chips(ann_dir):
    """(corners in raster px, class, difficult, chip) of every line of the
    chips' DOTA label files."""
    import re
    from mmretina.datasets.converters.dota import read_dota_labels
    rows = []
    for f in sorted(os.listdir(ann_dir)):
        x0, y0 = map(int, re.search(r'_x(\d+)_y(\d+)\.txt$', f).groups())
        lab = read_dota_labels(osp.join(ann_dir, f))
        for poly, name, flag in zip(lab.polys, lab.labels, lab.difficult):
            rows.append((poly + np.tile([x0, y0], 4), name, flag, (x0, y0)))
    return rows


def same_rectangle(p, q, atol):
    """Four corners each (8,): the same points, in any order."""
    p, q = p.reshape(4, 2), q.reshape(4, 2)
    return np.linalg.norm(p[:, None] - q[None], axis=-1).min(1).max() < atol


@pytest.mark.parametrize('raster_kind,label_crs', [
    ('utm', 'EPSG:32617'), ('utm', 'EPSG:4326'),
    ('utm-rotated', 'EPSG:32617'), ('epsg4326', 'EPSG:4326'),
    ('epsg4326', 'EPSG:32617')])
def test_rotated_labels_are_exact_in_raster_pixels(tmp_path, raster_kind,
                                                   label_crs):
    pytest.importorskip('mmrotate')
    raster, labels, want = rotated_case(tmp_path, raster_kind, label_crs)
    res = run(tmp_path, raster, labels, chip=256, empty_ratio=1.0,
              rotated=True, class_field='kind', min_visible=0.5)
    split = res['splits']['all']
    assert split['path'] == str(tmp_path / 'out' / 'all' / 'annfiles')
    assert split['chips'] == 4  # 256 px chips: x 0, 244; y 0, 44
    rows = read_rotated_chips(split['path'])
    assert split['objects'] == len(rows)
    for poly, name, flag, chip in rows:
        hits = [k for k, w in enumerate(want) if same_rectangle(poly, w,
                                                                1e-6)]
        assert len(hits) == 1, (poly, chip)
        assert name == ('plane' if hits[0] == 3 else 'ship')
        # difficult 2 where a corner lies outside the chip (256 px)
        x, y = poly[0::2] - chip[0], poly[1::2] - chip[1]
        inside = (x >= 0).all() and (x <= 256).all() and (y >= 0).all() \
            and (y <= 256).all()
        assert flag == (0 if inside else 2)
    found = {k for poly, *_ in rows for k, w in enumerate(want)
             if same_rectangle(poly, w, 1e-6)}
    assert found == {0, 1, 2, 3}
    # the plane (x 237..263) is cut by the edges of both chip columns
    assert {(chip, flag) for _, name, flag, chip in rows
            if name == 'plane'} == {((0, 0), 2), ((244, 0), 2)}
    lines = raster_config_lines(res)
    assert lines.startswith("# dataset lines for your config (mmrotate's "
                            'DOTADataset')
    assert "ann_file='all/annfiles/'" in lines and 'gsd = ' in lines
    from mmretina.datasets.converters.dota import check_dota_layout
    assert check_dota_layout(split['path'], split['img_dir'],
                             res['classes']) == f'4 images, {len(rows)} ' \
        'objects'


def test_rotated_chip_rule_cut_left_out_and_dropped(tmp_path):
    pytest.importorskip('mmrotate')
    objects = np.array([
        [240.0, 100.0, 40.0, 10.0, 0.0],   # x 220..260
        [250.0, 200.0, 20.0, 10.0, 0.0],   # x 240..260
        [30.0, 30.0, 20.0, 0.5, 0.3],      # 0.5 px high: dropped
        [120.0, 150.0, 20.0, 10.0, 0.7],   # whole in the left chips
    ])
    raster, labels, want = rotated_case(tmp_path, 'utm', 'EPSG:32617',
                                        objects, ['ship'] * 4)
    res = run(tmp_path, raster, labels, chip=256, empty_ratio=1.0,
              rotated=True, min_visible=0.7)
    rep = res['report']
    assert rep['dropped: rotated rectangles less than 1 px wide or high'] \
        == 1
    rows = read_rotated_chips(res['splits']['all']['path'])
    by_object = {}
    for poly, _, flag, chip in rows:
        k = next(k for k, w in enumerate(want) if same_rectangle(poly, w,
                                                                 1e-6))
        by_object.setdefault(k, set()).add((chip[0], flag))
    # chips x 0..256 and 244..500: object 0 has 90 % in the first (kept,
    # cut) and 40 % in the second (left out); object 1 80 % in each
    assert by_object[0] == {(0, 2)}
    assert by_object[1] == {(0, 2), (244, 2)}
    assert by_object[3] == {(0, 0)}
    assert 2 not in by_object
    left_out = 'left out: less than --min-visible inside (the DOTA layout ' \
        'has no ignore regions)'
    assert rep[left_out] == 2  # object 0 in the chips at x 244, y 0 and 44
    assert rep['kept, cut by the chip edge (difficult 2)'] == 2 + 4


def test_rotated_labels_at_another_gsd(tmp_path):
    """Chips cut at 0.2 m from a 0.1 m raster: the rectangles in the
    resampled grid's pixels are the raster's halved, exactly."""
    pytest.importorskip('mmrotate')
    raster, labels, want = rotated_case(tmp_path, 'utm', 'EPSG:32617')
    res = run(tmp_path, raster, labels, chip=256, empty_ratio=1.0,
              rotated=True, gsd=0.2)
    assert res['gsd'] == 0.2
    rows = read_rotated_chips(res['splits']['all']['path'])
    assert len(rows) == 4  # 250 x 150 px: one chip
    for poly, *_ in rows:
        assert any(same_rectangle(poly, w / 2, 1e-6) for w in want)


def test_cli_rotated_checks_with_dota_dataset(tmp_path, capsys):
    pytest.importorskip('mmrotate')
    from mmretina.cli.raster_to_coco import main
    raster, labels, _ = rotated_case(tmp_path, 'utm', 'EPSG:4326')
    out = str(tmp_path / 'o')
    assert main([raster, labels, '--out-dir', out, '--chip', '256',
                 '--rotated', '--class-field', 'kind', '--split',
                 'train=0.5,val=0.5', '--block', '256px']) == 0
    text = capsys.readouterr().out
    assert "mmrotate's DOTADataset loads it" in text
    assert "train_dataset = dict(type='DOTADataset'" in text
    assert "classes = ('plane', 'ship')" in text
    assert osp.isdir(osp.join(out, 'train', 'annfiles'))
    assert osp.isdir(osp.join(out, 'val', 'images'))
