"""InferenceRun (the engine of tools/infer.py and tools/dist_infer.sh):
GeoPackage polygons are the pixel boxes through the raster's affine
transform, bad inputs, reruns, merged layers, and 2 gloo ranks giving
exactly the 1-process output."""
import csv
import json
import os
import os.path as osp
import socket
import subprocess

import numpy as np
import pytest
import torch

pytest.importorskip('rasterio')
geopandas = pytest.importorskip('geopandas')
import rasterio  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from mmretina.inference.tiled import (LazyBackend,  # noqa: E402
                                      TiledInferencer)
from mmretina.deploy.pytorch import PytorchBackend
from mmretina.inference.tiled import load_image  # noqa: E402
from mmretina.inference.run import InferenceRun  # noqa: E402


REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

YELL = '2019_YELL_2_541000_4977000_image_crop'


def _tif(path, bgr, crs='EPSG:32617', nodata=None, origin=(404211.9,
                                                            3285142.9)):
    h, w = bgr.shape[:2]
    kw = dict(crs=crs, transform=from_origin(*origin, 0.1, 0.1)) \
        if crs else {}
    with rasterio.open(path, 'w', driver='GTiff', width=w, height=h,
                       count=3, dtype='uint8', nodata=nodata, tiled=True,
                       blockxsize=128, blockysize=128, **kw) as ds:
        ds.write(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)))
    return str(path)


def _run(model, out_dir, tile=400, **kw):
    lines = []
    inf = TiledInferencer(PytorchBackend(model), tile=tile, overlap=0.25,
                          batch_size=4, progress=False)
    run = InferenceRun(inf, classes=('tree', ),
                       out_dir=str(out_dir), score_thr=0.2,
                       log=lines.append, **kw)
    return run, lines


def test_gpkg_polygons_are_the_pixel_boxes_through_the_affine(
        df_model, df_images, tmp_path):
    tif = df_images['OSBS_029.tif']
    run, lines = _run(df_model, tmp_path)
    (res, ) = run.run([tif])
    gdf = geopandas.read_file(tmp_path / 'OSBS_029.gpkg')
    with rasterio.open(tif) as ds:
        crs, affine = ds.crs, ds.transform
    assert gdf.crs == crs and gdf.crs.to_epsg() == 32617
    keep = res['scores'] >= 0.2
    boxes = res['bboxes'][keep].astype(np.float64)
    assert len(gdf) == len(boxes) > 20
    for geom, (x1, y1, x2, y2) in zip(gdf.geometry, boxes):
        ring = np.array(geom.exterior.coords)
        want = np.array([affine * (c, r) for c, r in
                         ((x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1))])
        np.testing.assert_allclose(ring, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(gdf[['x1', 'y1', 'x2', 'y2']].to_numpy(),
                               boxes, atol=1e-4)
    assert (gdf['source'] == tif).all() and (gdf['class_name'] == 'tree').all()
    assert any('polygons (EPSG:32617) -> ' in s for s in lines)


def test_bad_inputs_and_edge_rasters(df_model, df_images, tmp_path):
    bgr = load_image(df_images['OSBS_029.png'])
    # an unwritable output folder: said before any inference
    blocker = tmp_path / 'file'
    blocker.write_text('')
    run, _ = _run(df_model, blocker / 'out')
    with pytest.raises(ValueError, match='--out-dir .*cannot write there'):
        run.run([df_images['OSBS_029.tif']])
    # an all-nodata raster: an empty layer, said so
    empty = _tif(tmp_path / 'empty.tif', np.zeros_like(bgr), nodata=0)
    # no CRS, asked for a GeoPackage: pixel coordinates, with a warning;
    # the 400 px window is larger than this 120 x 100 px raster
    plain = _tif(tmp_path / 'plain.tif', bgr[:100, :120], crs=None)
    out = tmp_path / 'out'
    run, lines = _run(df_model, out, fmt='gpkg')
    res = run.run([empty, plain])
    text = '\n'.join(lines)
    assert 'empty.tif: every window is nodata: no detection (the layer ' \
        'is empty)' in text
    assert len(geopandas.read_file(out / 'empty.gpkg')) == 0
    assert 'plain.tif has no CRS: the gpkg layer holds pixel coordinates' \
        in text
    assert 'window is larger than the raster (120x100 px)' in text
    gdf = geopandas.read_file(out / 'plain.gpkg')
    assert gdf.crs is None and len(gdf) == (res[1]['scores'] >= 0.2).sum()
    assert gdf.geometry.total_bounds[2] <= 120 + 1e-4  # pixels
    # a truncated raster: one line naming it, and nothing written for it
    data = open(_tif(tmp_path / 'big.tif', np.tile(bgr, (2, 2, 1))),
                'rb').read()
    (tmp_path / 'cut.tif').write_bytes(data[:len(data) // 4])
    out2 = tmp_path / 'out2'
    run, _ = _run(df_model, out2, tile=200)
    with pytest.raises(ValueError, match='cut.tif: cannot read .*truncated'):
        run.run([str(tmp_path / 'cut.tif')])
    assert [n for n in os.listdir(out2) if not n.startswith('.')] == []


def test_rerun_rewrites_outputs_from_records_and_merged_layer(
        df_model, df_images, tmp_path):
    bgr = load_image(df_images['OSBS_029.png'])
    a = _tif(tmp_path / 'a.tif', bgr[:, :200])
    b = _tif(tmp_path / 'b.tif', bgr[:, 200:], origin=(404231.9, 3285142.9))
    out = tmp_path / 'out'
    run, lines = _run(df_model, out, merge_layers=True, settings=dict(v=1))
    first = run.run([a, b])
    assert not osp.exists(out / 'a.gpkg')  # one layer for all
    merged = geopandas.read_file(out / 'detections.gpkg')
    assert sorted(set(merged['source'])) == [a, b]
    assert len(merged) == sum((r['scores'] >= 0.2).sum() for r in first)
    # the same detection settings, other output options: the outputs are
    # re-written from the records and the model is never loaded
    lazy = LazyBackend(lambda: pytest.fail('the model was loaded'))
    lines = []
    run = InferenceRun(TiledInferencer(lazy, tile=400, overlap=0.25,
                                       batch_size=4, progress=False),
                       out_dir=str(out), score_thr=0.35, log=lines.append,
                       settings=dict(v=1))
    again = run.run([a, b])
    assert not lazy.loaded
    assert any('2 input(s) finished before' in s for s in lines)
    assert run.classes == ('tree', )
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x['bboxes'], y['bboxes'])
    layer = geopandas.read_file(out / 'a.gpkg')  # per raster now
    assert len(layer) == (first[0]["scores"] >= 0.35).sum() > 0
    assert osp.isfile(out / 'a_detections.png')
    # other detection settings: run again
    run, lines = _run(df_model, out, merge_layers=True, settings=dict(v=2))
    run.run([a])
    assert not any('finished before' in s for s in lines)


class _Stop(Exception):
    pass


def test_killed_run_resumes_at_the_windows_left(df_model, df_images,
                                                tmp_path):
    """A run stopped after 3 batches, started again: only the windows left
    run, and the outputs equal an uninterrupted run's."""
    bgr = load_image(df_images[YELL + '.png'])
    r = _tif(tmp_path / 'r.tif', bgr[:500, :600])
    ref, _ = _run(df_model, tmp_path / 'ref', tile=120, settings=dict(v=1))
    expected = ref.run([r])[0]
    backend = PytorchBackend(df_model)
    seen = []

    def dying(imgs):
        if len(seen) == 3:
            raise _Stop
        seen.append(len(imgs))
        return backend(imgs)

    out = tmp_path / 'out'
    run = InferenceRun(TiledInferencer(dying, tile=120, overlap=0.25,
                                       batch_size=4, progress=False),
                       classes=('tree', ), out_dir=str(out), score_thr=0.2,
                       settings=dict(v=1), log=lambda s: None)
    with pytest.raises(_Stop):
        run.run([r])
    n_windows = len(run.inferencer.windows(600, 500))  # 42
    assert sum(seen) == 12 < n_windows - 12
    counted = []

    def counting(imgs):
        counted.append(len(imgs))
        return backend(imgs)

    lines = []
    run = InferenceRun(TiledInferencer(counting, tile=120, overlap=0.25,
                                       batch_size=4, progress=False),
                       classes=('tree', ), out_dir=str(out), score_thr=0.2,
                       settings=dict(v=1), log=lines.append)
    got = run.run([r])[0]
    assert sum(counted) == n_windows - 12
    assert any('resuming: 12 window(s) recorded before' in s for s in lines)
    for k in ('bboxes', 'scores', 'labels'):
        np.testing.assert_array_equal(got[k], expected[k])
    for name in ('results.json', 'detections.csv', 'r.gpkg'):
        if name.endswith('.gpkg'):
            g1 = geopandas.read_file(tmp_path / 'ref' / name)
            g2 = geopandas.read_file(out / name)
            assert len(g1) == len(g2) > 0
            assert all(x.equals_exact(y, 0)
                       for x, y in zip(g1.geometry, g2.geometry))
        else:
            with open(tmp_path / 'ref' / name) as f1, open(out / name) as f2:
                assert f1.read() == f2.read(), name
    assert not [n for n in os.listdir(out / '.mmretina')
                if n.endswith('.parts')]


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_one_command_line_same_detections_everywhere(df_checkpoint,
                                                     df_images, tmp_path):
    """One command line, the defaults (--tile auto: the model's 400 px
    window; --gsd auto): `mmretina predict`, tools/infer.py and
    tools/dist_infer.sh with 1 and 2 gloo ranks write the same outputs.
    3 rasters of 4 windows each: the windows of the middle raster are
    split between the ranks; rank 0 merges them."""
    bgr = load_image(df_images[YELL + '.png'])
    src = tmp_path / 'rasters'
    os.makedirs(src)
    for k, (y, x) in enumerate(((0, 0), (200, 300), (400, 600))):
        _tif(src / f'r{k}.tif', bgr[y:y + 500, x:x + 600],
             origin=(500000.0 + x * 0.1, 4000000.0 - y * 0.1))
    config, ckpt = df_checkpoint
    common = ['--score-thr', '0.2', '--device', 'cpu']
    # one thread: the same float sums in every process
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONPATH=REPO_ROOT + os.pathsep
               + os.environ.get('PYTHONPATH', ''))
    runs = {
        'predict': ['python', '-m', 'mmretina', 'predict', str(src), config,
                    ckpt],
        'infer': ['python', osp.join(REPO_ROOT, 'tools', 'infer.py'),
                  str(src), config, ckpt],
        'dist1': ['bash', osp.join(REPO_ROOT, 'tools', 'dist_infer.sh'),
                  config, ckpt, str(src), '1'],
        'dist2': ['bash', osp.join(REPO_ROOT, 'tools', 'dist_infer.sh'),
                  config, ckpt, str(src), '2'],
    }
    for name, argv in runs.items():
        env['PORT'] = str(_free_port())
        proc = subprocess.run(
            argv + ['--out-dir', str(tmp_path / name), *common],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=600)
        assert proc.returncode == 0, (name, proc.stdout[-5000:])
        if name == 'dist2':  # progress lines, not a terminal
            assert '[mmretina] r1.tif' in proc.stdout
    with open(tmp_path / 'predict' / 'results.json') as f:
        assert len({r['image_id'] for r in json.load(f)}) == 3
    for name in ('infer', 'dist1', 'dist2'):
        for out in ('results.json', 'detections.csv'):
            with open(tmp_path / 'predict' / out) as f1, \
                    open(tmp_path / name / out) as f2:
                assert f1.read() == f2.read(), (name, out)
        for k in range(3):
            g1 = geopandas.read_file(tmp_path / 'predict' / f'r{k}.gpkg')
            g2 = geopandas.read_file(tmp_path / name / f'r{k}.gpkg')
            assert len(g1) > 0
            assert g1.drop(columns='geometry').equals(
                g2.drop(columns='geometry'))
            assert all(a.equals_exact(b, 0) for a, b in zip(g1.geometry,
                                                            g2.geometry))
        assert not [n for n in os.listdir(tmp_path / name / '.mmretina')
                    if n.endswith('.parts')]


# ------------------------------------------------------------ oriented model
@pytest.fixture(scope='module')
def oriented():
    from oriented_model import oriented_model
    return oriented_model()


def _corners_by_hand(cx, cy, w, h, a):
    """mmrotate's rbox2qbox order: c + u + v, c + u - v, c - u - v,
    c - u + v; u = w/2 (cos a, sin a), v = h/2 (-sin a, cos a)."""
    import math
    ux, uy = w / 2 * math.cos(a), w / 2 * math.sin(a)
    vx, vy = -h / 2 * math.sin(a), h / 2 * math.cos(a)
    return [(cx + ux + vx, cy + uy + vy), (cx + ux - vx, cy + uy - vy),
            (cx - ux - vx, cy - uy - vy), (cx - ux + vx, cy - uy + vy),
            (cx + ux + vx, cy + uy + vy)]


def _mapped(t, points):
    """(col, row) -> (X, Y) through the affine t, written out."""
    return [(t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f)
            for x, y in points]


def _oriented_tif(path, bgr, transform, crs='EPSG:32633'):
    h, w = bgr.shape[:2]
    with rasterio.open(path, 'w', driver='GTiff', width=w, height=h,
                       count=3, dtype='uint8', crs=crs,
                       transform=transform) as ds:
        ds.write(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)))
    return str(path)


def test_oriented_gpkg_corners_are_the_window_detections_mapped(
        oriented, tmp_path):
    """The 'done when' of oriented rasters: a georeferenced raster (UTM 33N,
    0.5 m) read as 2 x 2 windows gives a GeoPackage of rotated polygons
    whose corners are the model's detections on the windows, computed
    directly, shifted to the raster and mapped through the affine (1e-6 m);
    the CSV holds cx, cy, w, h, angle; a rerun re-writes the layer from the
    records without the model."""
    bgr = np.random.RandomState(3).randint(0, 255, (200, 200, 3), np.uint8)
    transform = from_origin(500000.0, 4100000.0, 0.5, 0.5)
    tif = _oriented_tif(tmp_path / 'ships.tif', bgr, transform)
    backend = PytorchBackend(oriented)
    inf = TiledInferencer(backend, tile=128, overlap=56, batch_size=4,
                          progress=False)
    lines = []
    run = InferenceRun(inf, out_dir=str(tmp_path / 'out'), score_thr=0.5,
                       settings=dict(v=1), log=lines.append)
    (res, ) = run.run([tif])
    assert res['bboxes'].shape[1] == 5
    # the windows' detections computed directly (one batch, as the loop)
    wins = inf.windows(200, 200)
    assert len(wins) == 4
    direct = backend([bgr[w.y0:w.y1, w.x0:w.x1] for w in wins])
    shifted = torch.cat([d.bboxes + torch.tensor([w.x0, w.y0, 0, 0, 0])
                         for d, w in zip(direct, wins)]).numpy()
    keep = res['scores'] >= 0.5
    boxes = res['bboxes'][keep]
    for box in boxes:
        assert (shifted == box).all(axis=1).any()
    gdf = geopandas.read_file(tmp_path / 'out' / 'ships.gpkg')
    assert gdf.crs.to_epsg() == 32633
    assert len(gdf) == len(boxes) > 5
    assert set(gdf['class_name']) <= {'ship', 'plane'}
    for geom, box in zip(gdf.geometry, boxes.astype(np.float64)):
        want = _mapped(transform, _corners_by_hand(*box))
        np.testing.assert_allclose(np.array(geom.exterior.coords), want,
                                   rtol=0, atol=1e-6)
    np.testing.assert_array_equal(
        gdf[['cx', 'cy', 'w', 'h', 'angle']].to_numpy(),
        boxes.astype(np.float64))
    assert any('polygons (EPSG:32633) -> ' in s for s in lines)
    with open(tmp_path / 'out' / 'detections.csv') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['image_path', 'cx', 'cy', 'w', 'h', 'angle', 'label',
                       'score']
    assert len(rows) == len(boxes) + 1
    assert [float(v) for v in rows[1][1:6]] == pytest.approx(
        boxes[0].tolist(), abs=0.006)
    with open(tmp_path / 'out' / 'results.json') as f:
        assert len(json.load(f)[0]['rbox']) == 5
    # a rerun with another score threshold: from the records, no model
    lazy = LazyBackend(lambda: pytest.fail('the model was loaded'))
    again = InferenceRun(TiledInferencer(lazy, tile=128, overlap=56,
                                         batch_size=4, progress=False),
                         out_dir=str(tmp_path / 'out'), score_thr=0.7,
                         settings=dict(v=1), log=lambda s: None).run([tif])
    assert not lazy.loaded
    np.testing.assert_array_equal(again[0]['bboxes'], res['bboxes'])
    layer = geopandas.read_file(tmp_path / 'out' / 'ships.gpkg')
    assert len(layer) == (res['scores'] >= 0.7).sum()
    assert list(layer.columns[4:9]) == ['cx', 'cy', 'w', 'h', 'angle']


def test_oriented_polygons_in_a_rotated_geotransform(oriented, tmp_path):
    """A raster whose geotransform rotates and shears its pixels: each
    polygon is the window's detection's corners through that affine."""
    from rasterio.transform import Affine
    bgr = np.random.RandomState(4).randint(0, 255, (128, 128, 3), np.uint8)
    transform = Affine(0.3, 0.2, 500000.0, 0.1, -0.4, 4100000.0)
    tif = _oriented_tif(tmp_path / 'sheared.tif', bgr, transform)
    backend = PytorchBackend(oriented)
    run = InferenceRun(TiledInferencer(backend, tile=128, progress=False),
                       out_dir=str(tmp_path / 'out'), score_thr=0.5,
                       log=lambda s: None)
    run.run([tif])
    ref = backend([bgr])[0]  # one window: the backend's detections
    ref_boxes = ref.bboxes[ref.scores >= 0.5].double().numpy()
    gdf = geopandas.read_file(tmp_path / 'out' / 'sheared.gpkg')
    assert len(gdf) == len(ref_boxes) > 5
    for geom, box in zip(gdf.geometry, ref_boxes):
        want = _mapped(transform, _corners_by_hand(*box))
        np.testing.assert_allclose(np.array(geom.exterior.coords), want,
                                   rtol=0, atol=1e-6)


def test_merge_layers_of_rasters_in_two_crss_refused_before_the_model(
        df_model, df_images, tmp_path):
    """--merge-layers over rasters in different CRSs: refused from their
    headers, naming the files of each CRS, before the model is built or a
    window is read; what an earlier run wrote in out_dir stays."""
    bgr = load_image(df_images['OSBS_029.png'])
    a = _tif(tmp_path / 'a.tif', bgr[:, :200])
    b = _tif(tmp_path / 'b.tif', bgr[:, 200:], origin=(404231.9, 3285142.9))
    c = _tif(tmp_path / 'c.tif', bgr[:, :200], crs='EPSG:32618')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'detections.gpkg').write_bytes(b'earlier')
    lazy = LazyBackend(lambda: pytest.fail('the model was built'))
    run = InferenceRun(TiledInferencer(lazy, tile=120, overlap=0.25,
                                       batch_size=4, progress=False),
                       classes=('tree', ), out_dir=str(out),
                       merge_layers=True, log=lambda s: None)
    with pytest.raises(ValueError) as e:
        run.run([a, b, c])
    assert str(e.value) == (
        '--merge-layers: the rasters are in 2 different CRSs (EPSG:32617: '
        'a.tif, b.tif; EPSG:32618: c.tif), and one layer holds one CRS; '
        'write one layer per raster (without --merge-layers) or reproject '
        'the rasters to one CRS first (gdalwarp -t_srs)')
    assert not lazy.loaded
    assert sorted(os.listdir(out)) == ['detections.gpkg']
    assert (out / 'detections.gpkg').read_bytes() == b'earlier'
    # one layer per raster (no --merge-layers): each in its own CRS
    run, _ = _run(df_model, out)
    run.run([a, c])
    assert geopandas.read_file(out / 'a.gpkg').crs.to_epsg() == 32617
    assert geopandas.read_file(out / 'c.gpkg').crs.to_epsg() == 32618
