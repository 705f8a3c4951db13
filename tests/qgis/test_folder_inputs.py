"""INPUT_FOLDER of the evaluate and chips algorithms: a folder of two
rasters (OSBS_029.tif and a copy shifted 100 m east) and one label layer
covering both (the crowns and a copy shifted 100 m east) give what the
command line gives on the same folder."""
import json
import os.path as osp

import pytest

from qgis_harness import mmretina_cli, qgis_process, shifted_folder

ERROR_LAYERS = dict(TRUE_POSITIVES='tp', FALSE_POSITIVES='fp', MISSES='miss')


@pytest.fixture
def two_rasters(osbs, tmp_path):
    gpd = pytest.importorskip('geopandas')
    import pandas as pd
    tif, labels = osbs
    folder = shifted_folder(tif, tmp_path)
    crowns = gpd.read_file(labels).to_crs('EPSG:32617')
    moved = crowns.copy()
    moved['geometry'] = crowns.geometry.translate(xoff=100)
    both = tmp_path / 'both.gpkg'
    gpd.GeoDataFrame(pd.concat([crowns, moved], ignore_index=True),
                     crs=crowns.crs).to_file(both)
    return folder, both


def test_evaluate_on_a_folder_gives_the_command_line_overall_and_matches(
        qgis_profile, two_rasters, df_checkpoint, tmp_path):
    gpd = pytest.importorskip('geopandas')
    import rasterio
    folder, labels = two_rasters
    config, ckpt = df_checkpoint
    proc = qgis_process(
        qgis_profile, 'run', 'mmretina:evaluate', '--',
        f'INPUT_FOLDER={folder}', f'LABELS={labels}', f'MODEL={config}',
        f'CHECKPOINT={ckpt}', 'SCORE_THR=0.1',
        f'SUMMARY={tmp_path / "summary.gpkg"}',
        f'MATCHES={tmp_path / "matches.gpkg"}',
        *(f'{k}={tmp_path / k.lower()}.gpkg' for k in ERROR_LAYERS),
        f'OUTPUT_FOLDER={tmp_path / "qgis"}', timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f'--rasters {folder} ' in proc.stdout
    mmretina_cli('evaluate', config, ckpt, '--rasters', folder, '--labels',
                 labels, '--out-dir', tmp_path / 'cli', '--score-thr', 0.1,
                 timeout=600)
    cli = json.load(open(tmp_path / 'cli' / 'summary.json'))
    ours = json.load(open(tmp_path / 'qgis' / 'summary.json'))
    assert ours['overall'] == cli['overall']
    assert cli['overall']['n_gt'] == 122
    assert len(ours['per_raster']) == 2
    table = gpd.read_file(tmp_path / 'summary.gpkg')
    assert (table.level == 'raster').sum() == 2
    overall = table[table.level == 'overall'].iloc[0]
    assert overall.recall == pytest.approx(cli['overall']['recall'])

    matches = gpd.read_file(tmp_path / 'matches.gpkg')
    rows = open(tmp_path / 'cli' / 'matches.csv').read().splitlines()[1:]
    assert len(matches) == len(rows)
    assert matches.crs.to_epsg() == 32617
    assert set(matches.raster) == {'OSBS_029.tif', 'shifted.tif'}
    assert (matches.status == 'tp').sum() == cli['overall']['tp']
    # the three error layers: the rows of MATCHES by status, both rasters
    for name, status in ERROR_LAYERS.items():
        layer = gpd.read_file(tmp_path / f'{name.lower()}.gpkg')
        part = matches[matches.status == status]
        assert len(layer) == len(part) > 0, name
        assert set(layer.raster) == {'OSBS_029.tif', 'shifted.tif'}, name
    a = matches[matches.raster == 'OSBS_029.tif'].reset_index(drop=True)
    b = matches[matches.raster == 'shifted.tif'].reset_index(drop=True)
    assert len(a) == len(b) > 0
    # each raster's boxes on that raster
    for part, name in ((a, 'OSBS_029.tif'), (b, 'shifted.tif')):
        with rasterio.open(folder / name) as r:
            left, bottom, right, top = r.bounds
        x0, y0, x1, y1 = part.total_bounds
        assert left - 1e-6 <= x0 and x1 <= right + 1e-6
        assert bottom - 1e-6 <= y0 and y1 <= top + 1e-6
    # the same pixels: the copy's matches are the original's, 100 m east
    assert list(a.status) == list(b.status)
    for ga, gb in zip(a.geometry, b.geometry):
        assert ga.bounds == pytest.approx(
            (gb.bounds[0] - 100, gb.bounds[1], gb.bounds[2] - 100,
             gb.bounds[3]), abs=1e-6)


def test_chips_on_a_folder_give_the_command_line_coco(
        qgis_profile, two_rasters, tmp_path):
    folder, labels = two_rasters
    proc = qgis_process(qgis_profile, 'run', 'mmretina:chips', '--',
                        f'INPUT_FOLDER={folder}', f'LABELS={labels}',
                        'CHIP=200', 'SPLIT=train=0.5,val=0.5',
                        f'OUTPUT={tmp_path / "qgis"}')
    assert proc.returncode == 0, proc.stdout[-3000:]
    mmretina_cli('convert', 'raster', folder, labels, '--out-dir',
                 tmp_path / 'cli', '--chip', 200, '--split',
                 'train=0.5,val=0.5')
    names = set()
    for split in ('train', 'val'):
        ours = json.load(open(tmp_path / 'qgis' / 'annotations'
                              / f'{split}.json'))
        cli = json.load(open(tmp_path / 'cli' / 'annotations'
                             / f'{split}.json'))
        assert ours['annotations'] == cli['annotations']
        assert ([i['file_name'] for i in ours['images']]
                == [i['file_name'] for i in cli['images']])
        names |= {i['file_name'] for i in ours['images']}
    assert any('shifted' in n for n in names)
    assert any('OSBS_029' in n for n in names)
    assert sorted(p.name for p in (tmp_path / 'qgis' / 'images').iterdir()) \
        == sorted(p.name for p in (tmp_path / 'cli' / 'images').iterdir())


@pytest.mark.parametrize('alg', ['evaluate', 'chips'])
def test_input_and_folder_together_are_refused(qgis_profile, osbs, tmp_path,
                                               alg):
    tif, labels = osbs
    proc = qgis_process(qgis_profile, 'run', f'mmretina:{alg}', '--',
                        f'INPUT={tif}', f'INPUT_FOLDER={osp.dirname(tif)}',
                        f'LABELS={labels}', 'MODEL=/tmp/x.py',
                        'CHECKPOINT=/tmp/x.pth',
                        f'OUTPUT={tmp_path / "o"}',
                        f'OUTPUT_FOLDER={tmp_path / "o"}',
                        f'SUMMARY={tmp_path / "s.gpkg"}',
                        f'MATCHES={tmp_path / "m.gpkg"}',
                        *(f'{k}={tmp_path / k}.gpkg' for k in ERROR_LAYERS))
    assert proc.returncode != 0
    assert 'give either a raster layer (INPUT) or a folder' in proc.stdout


@pytest.mark.parametrize('alg', ['detect', 'evaluate'])
def test_a_folder_of_rasters_in_several_crss_is_refused_naming_them(
        qgis_profile, osbs, df_images, df_checkpoint, tmp_path, alg):
    """OSBS_029.tif (EPSG:32617), the same pixels declared in EPSG:32618
    and a PNG without CRS: detect and evaluate, whose layers hold one CRS,
    refuse the folder before running mmretina, naming each CRS's files and
    how to fix it; nothing is written."""
    import shutil

    import rasterio
    tif, labels = osbs
    config, ckpt = df_checkpoint
    folder = tmp_path / 'rasters'
    folder.mkdir()
    shutil.copy(tif, folder / 'OSBS_029.tif')
    with rasterio.open(tif) as r:
        with rasterio.open(folder / 'utm18.tif', 'w',
                           **dict(r.profile, crs='EPSG:32618')) as w:
            w.write(r.read())
    shutil.copy(df_images['OSBS_029.png'], folder / 'preview.png')
    (folder / 'notes.txt').write_text('not a raster: not listed')
    out = tmp_path / 'out'
    proc = qgis_process(qgis_profile, 'run', f'mmretina:{alg}', '--',
                        f'INPUT_FOLDER={folder}', f'LABELS={labels}',
                        f'MODEL={config}', f'CHECKPOINT={ckpt}',
                        f'OUTPUT={out}.gpkg', f'OUTPUT_FOLDER={out}',
                        f'SUMMARY={out}_summary.gpkg',
                        *(f'{k}={out}_{k}.gpkg' for k in ERROR_LAYERS))
    assert proc.returncode != 0
    errors = [line for line in proc.stdout.splitlines()
              if line.startswith('ERROR:')]
    assert len(errors) == 1, proc.stdout[-3000:]
    assert f'the rasters of {folder} are in 3 different CRSs' in errors[0]
    for part in ('EPSG:32617: OSBS_029.tif', 'EPSG:32618: utm18.tif',
                 'no CRS: preview.png', 'Warp (Reproject)',
                 'Run as Batch Process'):
        assert part in errors[0], errors[0]
    assert 'notes.txt' not in errors[0]
    assert '-m mmretina' not in proc.stdout  # refused before the run
    assert not list(tmp_path.glob('out*'))


def test_the_plugin_lists_a_folder_as_mmretina_does(tmp_path):
    """The extensions the plugin reads as rasters in a folder (QGIS's
    Python cannot import mmretina) are mmretina's own."""
    import subprocess

    from mmretina.geo.formats import IMAGE_EXTS
    from qgis_harness import PLUGIN, QGIS_PYTHON, qgis_env
    env = qgis_env(tmp_path, PYTHONPATH='/usr/share/qgis/python:'
                   + osp.dirname(PLUGIN))
    proc = subprocess.run(
        [QGIS_PYTHON, '-c', 'from mmretina_qgis.algorithms import '
         'RASTER_EXTS; print(" ".join(RASTER_EXTS))'], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.split() == list(IMAGE_EXTS)
