"""``mmretina:detect`` on part of a raster and on a folder, in real QGIS
(``qgis_process``, headless), on the DeepForest wheel's OSBS_029.tif
(400 x 400 px of 0.1 m, EPSG:32617): EXTENT (a GDAL VRT subset), MASK
(boxes whose centre is inside the polygons) and INPUT_FOLDER (one layer for
all rasters)."""
import os.path as osp

import pytest

from qgis_harness import mmretina_cli, qgis_process, shifted_folder

# pixel columns 100-300, rows 50-250 of OSBS_029.tif: an extent on whole
# pixels, so the VRT QGIS cuts and the window rasterio cuts are the same
COLS, ROWS = (100, 300), (50, 250)


def _window_extent(tif):
    import rasterio
    from rasterio.windows import Window, bounds
    with rasterio.open(tif) as r:
        win = Window(COLS[0], ROWS[0], COLS[1] - COLS[0], ROWS[1] - ROWS[0])
        return win, bounds(win, r.transform), r.crs


def _centres(frame):
    b = frame.geometry.bounds
    return (b.minx + b.maxx) / 2, (b.miny + b.maxy) / 2


def test_extent_gives_the_detections_of_the_same_window_on_the_command_line(
        qgis_profile, osbs, df_checkpoint, tmp_path):
    """The extent is pixel-aligned (columns 100-300, rows 50-250), so the
    plugin's VRT holds exactly the pixels of a GeoTIFF that rasterio cuts
    from the same window here: ``mmretina predict`` on that GeoTIFF must
    give the same boxes, in map coordinates, as the plugin (count,
    geometries to 1e-6 m, scores). This checks both that the model ran on
    the window only and that the boxes came back through the subset's
    geotransform (not its pixel origin) -- a check on counts of the
    full-raster run would depend on how windows near the edge see their
    neighbours."""
    gpd = pytest.importorskip('geopandas')
    import rasterio
    tif, _ = osbs
    config, ckpt = df_checkpoint
    win, (left, bottom, right, top), crs = _window_extent(tif)
    out = tmp_path / 'extent.gpkg'
    proc = qgis_process(qgis_profile, 'run', 'mmretina:detect', '--',
                        f'INPUT={tif}', f'MODEL={config}',
                        f'CHECKPOINT={ckpt}', 'SCORE_THR=0.3',
                        f'EXTENT={left},{right},{bottom},{top} [EPSG:32617]',
                        f'OUTPUT={out}')
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert '.vrt' in proc.stdout  # mmretina read the subset
    cut = tmp_path / 'cut' / 'OSBS_029.tif'
    cut.parent.mkdir()
    with rasterio.open(tif) as r:
        profile = dict(r.profile, width=win.width, height=win.height,
                       transform=r.window_transform(win))
        profile.pop('blockxsize', None), profile.pop('blockysize', None)
        profile['tiled'] = False
        with rasterio.open(cut, 'w', **profile) as w:
            w.write(r.read(window=win))
    mmretina_cli('predict', cut, config, ckpt, '--out-dir', tmp_path / 'cli',
                 '--score-thr', 0.3)
    ours = gpd.read_file(out)
    cli = gpd.read_file(tmp_path / 'cli' / 'OSBS_029.gpkg')
    assert len(ours) == len(cli) > 0
    assert ours.crs.to_epsg() == 32617
    assert list(ours.score) == pytest.approx(list(cli.score), abs=1e-6)
    for a, b in zip(ours.geometry, cli.geometry):
        assert a.equals_exact(b, 1e-6)
    cx, cy = _centres(ours)
    assert ((cx > left) & (cx < right) & (cy > bottom) & (cy < top)).all()


def test_mask_keeps_the_boxes_whose_centre_is_inside(
        qgis_profile, osbs, df_checkpoint, tmp_path):
    """A disc of 12 m radius in the raster's middle, given in EPSG:4326
    (another CRS than the raster's): every box centre is inside it and
    there are fewer boxes than on the whole raster."""
    gpd = pytest.importorskip('geopandas')
    from shapely.geometry import Point
    tif, _ = osbs
    config, ckpt = df_checkpoint
    disc = Point(404231.9, 3285122.9).buffer(12)
    mask = tmp_path / 'mask.gpkg'
    gpd.GeoDataFrame(dict(name=['disc']), geometry=[disc],
                     crs='EPSG:32617').to_crs('EPSG:4326').to_file(mask)
    out = tmp_path / 'masked.gpkg'
    proc = qgis_process(qgis_profile, 'run', 'mmretina:detect', '--',
                        f'INPUT={tif}', f'MODEL={config}',
                        f'CHECKPOINT={ckpt}', 'SCORE_THR=0.3',
                        f'MASK={mask}', f'OUTPUT={out}')
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert '.vrt' in proc.stdout  # the model ran on the mask's bounds
    mmretina_cli('predict', tif, config, ckpt, '--out-dir', tmp_path / 'cli',
                 '--score-thr', 0.3)
    full = gpd.read_file(tmp_path / 'cli' / 'OSBS_029.gpkg')
    ours = gpd.read_file(out)
    assert 0 < len(ours) < len(full)
    assert ours.crs.to_epsg() == 32617
    cx, cy = _centres(ours)
    inside = disc.buffer(1e-3)  # the mask went to EPSG:4326 and back
    assert all(inside.contains(Point(x, y)) for x, y in zip(cx, cy))


def test_an_extent_off_the_raster_is_refused(qgis_profile, osbs,
                                             df_checkpoint, tmp_path):
    tif, _ = osbs
    config, ckpt = df_checkpoint
    out = tmp_path / 'none.gpkg'
    # a degree square in the Gulf of Guinea: far from Florida's raster
    proc = qgis_process(qgis_profile, 'run', 'mmretina:detect', '--',
                        f'INPUT={tif}', f'MODEL={config}',
                        f'CHECKPOINT={ckpt}', 'EXTENT=0,1,0,1 [EPSG:4326]',
                        f'OUTPUT={out}')
    assert proc.returncode != 0
    errors = [line for line in proc.stdout.splitlines()
              if line.startswith('ERROR:')]
    assert errors and 'does not overlap the raster layer' in errors[0], \
        proc.stdout[-2000:]
    assert 'mmretina predict' not in proc.stdout and not osp.exists(out)


def test_a_folder_of_rasters_gives_one_layer(qgis_profile, osbs,
                                             df_checkpoint, tmp_path):
    """OSBS_029.tif and a copy shifted 100 m east: one layer, both sources,
    the same boxes in each, the copy's 100 m east."""
    gpd = pytest.importorskip('geopandas')
    tif, _ = osbs
    config, ckpt = df_checkpoint
    folder = shifted_folder(tif, tmp_path)
    out = tmp_path / 'folder.gpkg'
    proc = qgis_process(qgis_profile, 'run', 'mmretina:detect', '--',
                        f'INPUT_FOLDER={folder}', f'MODEL={config}',
                        f'CHECKPOINT={ckpt}', 'SCORE_THR=0.3',
                        f'OUTPUT={out}')
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert '--merge-layers' in proc.stdout
    ours = gpd.read_file(out)
    names = ours.source.map(osp.basename)
    a = ours[names == 'OSBS_029.tif'].reset_index(drop=True)
    b = ours[names == 'shifted.tif'].reset_index(drop=True)
    assert set(names) == {'OSBS_029.tif', 'shifted.tif'}
    assert len(a) == len(b) > 0 and len(ours) == 2 * len(a)
    assert ours.crs.to_epsg() == 32617
    assert list(a.score) == pytest.approx(list(b.score), abs=1e-6)
    for ga, gb in zip(a.geometry, b.geometry):
        assert ga.bounds == pytest.approx(
            (gb.bounds[0] - 100, gb.bounds[1], gb.bounds[2] - 100,
             gb.bounds[3]), abs=1e-6)


def test_input_and_folder_together_are_refused(qgis_profile, osbs,
                                               df_checkpoint, tmp_path):
    tif, _ = osbs
    config, ckpt = df_checkpoint
    proc = qgis_process(qgis_profile, 'run', 'mmretina:detect', '--',
                        f'INPUT={tif}', f'INPUT_FOLDER={osp.dirname(tif)}',
                        f'MODEL={config}', f'CHECKPOINT={ckpt}',
                        f'OUTPUT={tmp_path / "x.gpkg"}')
    assert proc.returncode != 0
    assert 'give either a raster layer (INPUT) or a folder' in proc.stdout
