"""tools/infer.py window by window (PyTorch and onnxruntime), its outputs
(PNG, COCO JSON, CSV, GeoPackage), and tools/test.py --tile."""
import csv
import json
import os
import os.path as osp
import pickle
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

YELL = '2019_YELL_2_541000_4977000_image_crop'


# a 700 x 620 part of the YELL crop: 2 x 2 windows of 400 px (keeps the
# subprocess runs short on 2 cores)
CROP = (slice(100, 720), slice(200, 900))


@pytest.fixture(scope='module')
def image_dir(df_images, tmp_path_factory):
    """A directory with a 700 x 620 YELL image and the OSBS GeoTIFF."""
    import cv2
    d = tmp_path_factory.mktemp('infer_in')
    img = cv2.imread(df_images[YELL + '.png'])
    cv2.imwrite(osp.join(d, YELL + '.png'), img[CROP])
    shutil.copy(df_images['OSBS_029.tif'], d)
    return str(d)


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def pytorch_run(image_dir, df_checkpoint, run_tool, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('infer_pt'))
    config, ckpt = df_checkpoint
    proc = run_tool('infer.py', image_dir, config, ckpt, '--out-dir', out,
                    '--tile', 400, '--overlap', 0.25, '--batch', 4,
                    '--score-thr', 0.2, '--device', 'cpu')
    assert proc.returncode == 0, proc.stdout[-5000:]
    return out, proc.stdout


def test_infer_tiled_outputs(pytorch_run, image_dir):
    import cv2
    out, stdout = pytorch_run
    # 2 x 2 windows over 700 x 620; the 400 x 400 GeoTIFF is one window
    assert '(4 windows of 400 px)' in stdout
    assert '(1 windows of 400 px)' in stdout
    # progress lines (not a terminal): raster k of N, windows, rate
    assert re.search(rf'\[mmretina\] {YELL}.png [12]/2: 4/4 windows '
                     r'\(100%\), [0-9.]+ windows/s', stdout)
    png = cv2.imread(osp.join(out, YELL + '_detections.png'))
    src = cv2.imread(osp.join(image_dir, YELL + '.png'))
    assert png.shape == src.shape and (png != src).any()
    rows = _read_csv(osp.join(out, 'detections.csv'))
    assert list(rows[0]) == ['image_path', 'xmin', 'ymin', 'xmax', 'ymax',
                             'label', 'score']
    yell = [r for r in rows if r['image_path'].endswith(YELL + '.png')]
    m = re.search(r'^(\d+) detections with score >= 0.2 \(of (\d+)\) drawn '
                  r'into .*' + YELL, stdout, re.M)
    assert m and int(m.group(1)) == len(yell) > 0
    xmax = max(float(r['xmax']) for r in yell)
    ymax = max(float(r['ymax']) for r in yell)
    assert 450 < xmax <= 700 and 450 < ymax <= 620  # the whole image
    assert {r['label'] for r in rows} == {'tree'}
    with open(osp.join(out, 'results.json')) as f:
        res = json.load(f)
    # the input list is sorted: the YELL image is image_id 1
    assert len([r for r in res if r['image_id'] == 1]) == int(m.group(2))
    assert all(r['category_id'] == 1 and len(r['bbox']) == 4 for r in res)
    # the GeoTIFF's boxes in UTM 17N metres, in a GeoPackage
    import geopandas
    gdf = geopandas.read_file(osp.join(out, 'OSBS_029.gpkg'))
    assert gdf.crs.to_epsg() == 32617
    assert not osp.exists(osp.join(out, YELL + '.gpkg'))  # not georeferenced
    tif_rows = [r for r in rows if r['image_path'].endswith('.tif')]
    assert len(gdf) == len(tif_rows) > 0
    xy = np.array([c for g in gdf.geometry for c in g.exterior.coords])
    assert (xy[:, 0] >= 404211.9 - 1e-6).all()
    assert (xy[:, 0] <= 404251.9 + 1e-6).all()
    assert (xy[:, 1] <= 3285142.9 + 1e-6).all()
    assert (xy[:, 1] >= 3285102.9 - 1e-6).all()
    first = gdf.geometry[0].exterior.coords[0]
    r0 = tif_rows[0]
    assert first[0] == pytest.approx(404211.9 + 0.1 * float(r0['xmin']),
                                     abs=1e-3)
    assert first[1] == pytest.approx(3285142.9 - 0.1 * float(r0['ymin']),
                                     abs=1e-3)
    assert gdf.loc[0, 'x1'] == pytest.approx(float(r0['xmin']), abs=0.006)


def test_infer_onnxruntime_tiled_matches_pytorch(pytorch_run, image_dir,
                                                 df_onnx, run_tool, tmp_path):
    out_pt, _ = pytorch_run
    proc = run_tool('infer.py', image_dir, df_onnx[0], '--backend',
                    'onnxruntime', '--out-dir', tmp_path, '--tile', 400,
                    '--overlap', 0.25, '--score-thr', 0.2, '--threads', 2)
    assert proc.returncode == 0, proc.stdout[-5000:]
    pt = _read_csv(osp.join(out_pt, 'detections.csv'))
    ort = _read_csv(osp.join(tmp_path, 'detections.csv'))
    assert len(ort) == len(pt)
    cols = ('xmin', 'ymin', 'xmax', 'ymax', 'score')
    for name in {r['image_path'].rsplit('/', 1)[-1] for r in pt}:
        a = np.array([[float(r[c]) for c in cols] for r in pt
                      if r['image_path'].endswith('/' + name)])
        b = np.array([[float(r[c]) for c in cols] for r in ort
                      if r['image_path'].endswith('/' + name)])
        assert len(a) == len(b) > 0
        # one-to-one nearest boxes (scores tie at the CSV's 5 decimals)
        used = np.zeros(len(a), bool)
        for row in b:
            d = np.abs(a[:, :4] - row[:4]).max(1) + 1e9 * used
            j = int(d.argmin())
            used[j] = True
            assert d[j] <= 0.011, (name, row, a[j])  # CSV: 2 decimals
            assert abs(a[j, 4] - row[4]) <= 2e-5
    assert osp.isfile(osp.join(tmp_path, 'OSBS_029.gpkg'))


def test_infer_argument_errors(df_onnx, tmp_path, capsys):
    from mmretina.cli import infer
    with pytest.raises(SystemExit):
        infer.parse_args(['x.png', df_onnx[0], '--out', 'a.png'])
    assert 'takes CONFIG CHECKPOINT, got 1' in capsys.readouterr().err
    # neither --out nor --out-dir: outputs/, as mmdet's image_demo.py
    assert infer.parse_args(['x.png', 'a.py', 'b.pth']).out_dir == 'outputs'
    assert infer.parse_args(['x.png', 'a.py', 'b.pth', '--out',
                             'a.png']).out_dir is None
    with pytest.raises(SystemExit):
        infer.parse_args(['x.png', df_onnx[0], '--backend', 'onnxruntime',
                          '--fuse-conv-bn', '--out', 'a.png'])
    assert '--fuse-conv-bn applies to --backend pytorch on --device cpu' \
        in capsys.readouterr().err
    with pytest.raises(SystemExit, match='no image'):
        infer.list_images(str(tmp_path))


def test_predict_with_no_flag_writes_the_layer_into_outputs(
        image_dir, df_checkpoint, tmp_path, monkeypatch, capsys):
    """``mmretina predict RASTER CONFIG CHECKPOINT``: the GeoTIFF read at
    the model's GSD in its windows, its GeoPackage, CSV, COCO results and
    preview in ./outputs/."""
    pytest.importorskip('pyogrio')
    from mmretina.cli import main as cli
    monkeypatch.chdir(tmp_path)
    config, ckpt = df_checkpoint
    cli.main(['predict', osp.join(image_dir, 'OSBS_029.tif'), config, ckpt,
              '--no-progress'])
    assert 'outputs go to outputs/' in capsys.readouterr().out
    out = tmp_path / 'outputs'
    for name in ('OSBS_029.gpkg', 'OSBS_029_detections.png', 'results.json',
                 'detections.csv'):
        assert (out / name).is_file(), name
    assert len(_read_csv(out / 'detections.csv')) > 0


def _coco_from_voc(df_images, root):
    """COCO json over OSBS_029 (400 x 400, one window) and the 700 x 620
    YELL image (boxes of the wheel's VOC files inside it)."""
    import cv2
    images, anns = [], []
    for i, stem in enumerate(['OSBS_029', YELL], 1):
        img = cv2.imread(df_images[stem + '.png'])
        x0 = y0 = 0
        if stem == YELL:
            img = img[CROP]
            y0, x0 = CROP[0].start, CROP[1].start
        cv2.imwrite(osp.join(root, stem + '.png'), img)
        h, w = img.shape[:2]
        images.append(dict(id=i, file_name=stem + '.png', width=w, height=h))
        for obj in ET.parse(df_images[stem + '.xml']).iter('object'):
            b = [float(obj.find('bndbox/' + k).text)
                 for k in ('xmin', 'ymin', 'xmax', 'ymax')]
            b = [b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0]
            if b[0] < 0 or b[1] < 0 or b[2] > w or b[3] > h:
                continue
            anns.append(dict(id=len(anns) + 1, image_id=i, category_id=1,
                             bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]],
                             area=(b[2] - b[0]) * (b[3] - b[1]), iscrowd=0))
    ann = osp.join(root, 'ann.json')
    with open(ann, 'w') as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=1, name='tree')]), f)
    return ann


def test_test_py_tile(df_images, df_checkpoint, df_model, run_tool,
                      tmp_path):
    import torch
    root = str(tmp_path / 'data')
    os.makedirs(root)
    ann = _coco_from_voc(df_images, root)
    config, ckpt = df_checkpoint
    opts = ['--cfg-options', f'test_dataloader.dataset.data_root={root}/',
            'test_dataloader.dataset.ann_file=ann.json',
            'test_dataloader.dataset.data_prefix.img=',
            f'test_evaluator.ann_file={ann}']
    tiled = run_tool('test.py', config, ckpt, '--work-dir', tmp_path / 'w2',
                     '--out', tmp_path / 'tiled.pkl', '--tile', 400,
                     '--overlap', 0.25, *opts)
    assert tiled.returncode == 0, tiled.stdout[-5000:]
    assert re.search(r"tiled evaluation .*'coco/bbox_mAP_50': ",
                     tiled.stdout), tiled.stdout[-3000:]
    # the untiled detections, as tools/test.py computes them (batch 1)
    from mmdet.apis import inference_detector
    plain_res = {
        i: inference_detector(df_model, osp.join(root, name)).pred_instances
        for i, name in ((1, 'OSBS_029.png'), (2, YELL + '.png'))
    }
    with open(tmp_path / 'tiled.pkl', 'rb') as f:
        tiled_res = {r['img_id']: r['pred_instances'] for r in pickle.load(f)}
    # OSBS_029 is one window: exactly the untiled detections
    for k in ('bboxes', 'scores', 'labels'):
        assert torch.equal(plain_res[1][k], tiled_res[1][k]), k
    assert len(tiled_res[1]['bboxes']) > 50
    # the YELL image: the untiled run sees it shrunk to 400 x 354, the
    # tiled one at full resolution, so boxes are smaller and more numerous
    pw = (plain_res[2]['bboxes'][:, 2] - plain_res[2]['bboxes'][:, 0])
    tw = (tiled_res[2]['bboxes'][:, 2] - tiled_res[2]['bboxes'][:, 0])
    assert len(tiled_res[2]['bboxes']) > len(plain_res[2]['bboxes'])
    assert float(tw.median()) < float(pw.median())
    assert float(tiled_res[2]['bboxes'][:, 2].max()) > 450


def test_predict_oriented_model_writes_rotated_polygons(tmp_path):
    """`mmretina predict` on a georeferenced raster with an oriented model
    (mmrotate's rotated RetinaNet config, shrunk): a GeoPackage of rotated
    polygons, the model's detections on the raster's window through the
    affine; the CSV in cx, cy, w, h, angle."""
    import subprocess
    import sys

    geopandas = pytest.importorskip('geopandas')
    rasterio = pytest.importorskip('rasterio')
    from rasterio.transform import from_origin

    from mmretina.deploy.pytorch import PytorchBackend
    from mmretina.structures.rotated import rbox_corners
    from oriented_model import oriented_model, write_oriented
    model = oriented_model()
    config, ckpt = write_oriented(str(tmp_path), model)
    bgr = np.random.RandomState(5).randint(0, 255, (128, 128, 3), np.uint8)
    t = from_origin(500000.0, 4100000.0, 0.5, 0.5)
    tif = str(tmp_path / 'harbour.tif')
    with rasterio.open(tif, 'w', driver='GTiff', width=128, height=128,
                       count=3, dtype='uint8', crs='EPSG:32633',
                       transform=t) as ds:
        ds.write(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)))
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONPATH=repo + os.pathsep + os.environ.get('PYTHONPATH',
                                                             ''))
    out = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, '-m', 'mmretina', 'predict', tif, config, ckpt,
         '--out-dir', str(out), '--score-thr', '0.5', '--device', 'cpu',
         '--no-progress'], cwd=repo, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert 'polygons (EPSG:32633) -> ' in proc.stdout
    gdf = geopandas.read_file(out / 'harbour.gpkg')
    ref = PytorchBackend(model)([bgr])[0]  # the raster is one window
    keep = ref.scores >= 0.5
    assert len(gdf) == int(keep.sum()) > 5
    assert gdf['class_name'].tolist() == [
        ('ship', 'plane')[i] for i in ref.labels[keep].tolist()]
    corners = rbox_corners(ref.bboxes[keep].double()).numpy()
    for geom, c in zip(gdf.geometry, corners):
        want = np.stack([t.a * c[:, 0] + t.b * c[:, 1] + t.c,
                         t.d * c[:, 0] + t.e * c[:, 1] + t.f], 1)
        # another process, one thread: equal to float rounding (1e-4 px)
        np.testing.assert_allclose(np.array(geom.exterior.coords)[:4], want,
                                   rtol=0, atol=5e-5)
    with open(out / 'detections.csv') as f:
        assert next(csv.reader(f)) == ['image_path', 'cx', 'cy', 'w', 'h',
                                       'angle', 'label', 'score']
