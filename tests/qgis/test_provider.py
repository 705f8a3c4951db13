"""The provider in real QGIS (``qgis_process``, headless): it is listed, its
algorithms give the command line's outputs on the DeepForest wheel's
OSBS_029.tif, and a wrong interpreter gives the one-line fix."""
import json
import os.path as osp

import pytest

from qgis_harness import DF_CONFIG, mmretina_cli, qgis_process

FIX = ('set Processing > Options > Providers > mmretina > Python interpreter '
       'to the python of the environment where mmretina is installed')


def test_plugins_lists_it_and_list_shows_three_algorithms(qgis_profile):
    plugins = qgis_process(qgis_profile, 'plugins')
    assert plugins.returncode == 0, plugins.stdout[-2000:]
    assert '* mmretina_qgis' in plugins.stdout  # enabled, with a provider
    listed = qgis_process(qgis_profile, 'list')
    assert listed.returncode == 0, listed.stdout[-2000:]
    algs = {line.split()[0] for line in listed.stdout.splitlines()
            if line.strip().startswith('mmretina:')}
    assert algs == {'mmretina:detect', 'mmretina:evaluate',
                    'mmretina:chips'}


def test_detect_gives_the_features_of_mmretina_predict(
        qgis_profile, osbs, df_checkpoint, tmp_path):
    gpd = pytest.importorskip('geopandas')
    tif, _ = osbs
    config, ckpt = df_checkpoint
    out = tmp_path / 'qgis' / 'detections.gpkg'
    # paths relative to qgis_process's working folder, as a user types them
    proc = qgis_process(qgis_profile, 'run', 'mmretina:detect', '--',
                        f'INPUT={osp.basename(tif)}', f'MODEL={config}',
                        f'CHECKPOINT={ckpt}', 'SCORE_THR=0.3', 'GSD=auto',
                        'OUTPUT=' + osp.relpath(out, osp.dirname(tif)),
                        cwd=osp.dirname(tif))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert '[mmretina] OSBS_029.tif 1/1: 1/1 windows (100%)' in proc.stdout
    mmretina_cli('predict', tif, config, ckpt, '--out-dir', tmp_path / 'cli',
                 '--score-thr', 0.3)
    ours = gpd.read_file(out)
    cli = gpd.read_file(tmp_path / 'cli' / 'OSBS_029.gpkg')
    assert len(ours) == len(cli) > 0
    assert ours.crs == cli.crs and ours.crs.to_epsg() == 32617
    assert list(ours.columns) == list(cli.columns)
    assert (ours[['x1', 'y1', 'x2', 'y2']].values
            == pytest.approx(cli[['x1', 'y1', 'x2', 'y2']].values))
    assert list(ours.score) == pytest.approx(list(cli.score), abs=1e-6)
    for a, b in zip(ours.geometry, cli.geometry):
        assert a.equals_exact(b, 1e-6)


def _matches_csv(folder):
    import csv
    with open(folder / 'matches.csv', newline='') as f:
        return list(csv.DictReader(f))


def _row_box(row, transform):
    """A matches.csv row's box (the prediction's, the label's for a miss)
    in map coordinates, through the raster's affine transform."""
    from shapely.geometry import box
    side = 'gt' if row['status'] == 'miss' else 'pred'
    x1, y1, x2, y2 = (float(row[f'{side}_{k}'])
                      for k in ('xmin', 'ymin', 'xmax', 'ymax'))
    (a, b), (c, d) = transform @ (x1, y1), transform @ (x2, y2)
    return box(min(a, c), min(b, d), max(a, c), max(b, d))


def test_evaluate_gives_the_command_line_summary_and_three_error_layers(
        qgis_profile, osbs, df_checkpoint, tmp_path):
    """The summary of ``mmretina evaluate``, and its matches.csv split into
    three layers: true positives (the predicted boxes), false positives
    (the predicted boxes) and misses (the labels' boxes), each with as many
    features as the command line's rows of that status, their geometries
    those rows' boxes through the raster's transform (to 1e-6 m), in the
    rasters' CRS; MATCHES, asked for, holds all of them."""
    gpd = pytest.importorskip('geopandas')
    import rasterio
    tif, labels = osbs
    config, ckpt = df_checkpoint
    layers = {name: tmp_path / f'{name.lower()}.gpkg' for name in
              ('TRUE_POSITIVES', 'FALSE_POSITIVES', 'MISSES', 'MATCHES')}
    proc = qgis_process(
        qgis_profile, 'run', 'mmretina:evaluate', '--', f'INPUT={tif}',
        f'LABELS={labels}', f'MODEL={config}', f'CHECKPOINT={ckpt}',
        'SCORE_THR=0.1', f'SUMMARY={tmp_path / "summary.gpkg"}',
        *(f'{k}={v}' for k, v in layers.items()),
        f'OUTPUT_FOLDER={tmp_path / "qgis"}')
    assert proc.returncode == 0, proc.stdout[-3000:]
    mmretina_cli('evaluate', config, ckpt, '--rasters', tif, '--labels',
                 labels, '--out-dir', tmp_path / 'cli', '--score-thr', 0.1)
    cli = json.loads((tmp_path / 'cli' / 'summary.json').read_text())
    ours = json.loads((tmp_path / 'qgis' / 'summary.json').read_text())
    assert ours['overall'] == cli['overall']
    assert cli['overall']['n_gt'] == 61
    table = gpd.read_file(tmp_path / 'summary.gpkg')
    overall = table[table.level == 'overall'].iloc[0]
    assert overall.precision == pytest.approx(cli['overall']['precision'])
    assert overall.recall == pytest.approx(cli['overall']['recall'])
    assert f"RECALL:\t{cli['overall']['recall']}" in proc.stdout

    rows = _matches_csv(tmp_path / 'cli')
    with rasterio.open(tif) as r:
        transform = r.transform
    tp, n_gt, n_pred = (cli['overall'][k] for k in ('tp', 'n_gt', 'n_pred'))
    expected = dict(TRUE_POSITIVES=('tp', tp),
                    FALSE_POSITIVES=('fp', n_pred - tp),
                    MISSES=('miss', n_gt - tp))
    assert all(n > 0 for _, n in expected.values()), expected  # all tested
    for name, (status, n) in expected.items():
        layer = gpd.read_file(layers[name])
        wanted = [r for r in rows if r['status'] == status]
        assert len(layer) == len(wanted) == n, name
        assert layer.crs.to_epsg() == 32617
        assert set(layer.status) == {status}
        for got, row in zip(layer.itertuples(), wanted):
            assert got.geometry.normalize().equals_exact(
                _row_box(row, transform).normalize(), 1e-6)
            assert [None if v != v else int(v)  # NaN: a null field
                    for v in (got.truth_id, got.prediction_id)] == [
                int(row[k]) if row[k] else None
                for k in ('truth_id', 'prediction_id')]
    matches = gpd.read_file(layers['MATCHES'])
    assert len(matches) == len(rows)
    assert list(matches.status) == [r['status'] for r in rows]
    for got, row in zip(matches.geometry, rows):
        assert got.normalize().equals_exact(
            _row_box(row, transform).normalize(), 1e-6)


def test_chips_give_the_command_line_chip_folder(qgis_profile, osbs,
                                                 tmp_path):
    tif, labels = osbs
    # a layer source as QGIS writes it: mmretina gets the file
    proc = qgis_process(qgis_profile, 'run', 'mmretina:chips', '--',
                        f'INPUT={tif}', f'LABELS={labels}|layername=crowns',
                        'CHIP=200',
                        'SPLIT=train=0.5,val=0.5',
                        f'OUTPUT={tmp_path / "qgis"}')
    assert proc.returncode == 0, proc.stdout[-3000:]
    ran = [line for line in proc.stdout.splitlines()
           if '-m mmretina convert raster' in line]
    assert ran and f' {labels} ' in ran[0] and '|' not in ran[0], ran
    mmretina_cli('convert', 'raster', tif, labels, '--out-dir',
                 tmp_path / 'cli', '--chip', 200, '--split',
                 'train=0.5,val=0.5')
    for split in ('train', 'val'):
        ours = json.load(open(tmp_path / 'qgis' / 'annotations'
                              / f'{split}.json'))
        cli = json.load(open(tmp_path / 'cli' / 'annotations'
                             / f'{split}.json'))
        assert ours['annotations'] == cli['annotations']
        assert ([i['file_name'] for i in ours['images']]
                == [i['file_name'] for i in cli['images']])
    assert sorted(p.name for p in (tmp_path / 'qgis' / 'images').iterdir()) \
        == sorted(p.name for p in (tmp_path / 'cli' / 'images').iterdir())


@pytest.mark.parametrize('python', ['/usr/bin/python3', '/no/such/python'])
def test_a_wrong_interpreter_gives_the_fix_and_fails(qgis_profile, osbs,
                                                      tmp_path, python):
    tif, _ = osbs
    out = tmp_path / 'detections.gpkg'
    proc = qgis_process(qgis_profile, 'run', 'mmretina:detect', '--',
                        f'INPUT={tif}', f'MODEL={DF_CONFIG}',
                        'CHECKPOINT=/tmp/x.pth', f'OUTPUT={out}',
                        MMRETINA_PYTHON=python)
    assert proc.returncode != 0
    errors = [line for line in proc.stdout.splitlines()
              if line.startswith('ERROR:')]
    assert len(errors) == 1 and FIX in errors[0] and python in errors[0], \
        proc.stdout[-2000:]
    assert not osp.exists(out)


@pytest.mark.slow  # the ONNX export (df_onnx) takes 30-40 s on 2 cores
def test_detect_runs_an_exported_onnx_model(qgis_profile, osbs, df_onnx,
                                            tmp_path):
    gpd = pytest.importorskip('geopandas')
    pytest.importorskip('onnxruntime')
    tif, _ = osbs
    onnx, _ = df_onnx
    out = tmp_path / 'qgis.gpkg'
    proc = qgis_process(qgis_profile, 'run', 'mmretina:detect', '--',
                        f'INPUT={tif}', f'MODEL={onnx}', 'BACKEND=1',
                        f'OUTPUT={out}')
    assert proc.returncode == 0, proc.stdout[-3000:]
    mmretina_cli('predict', tif, onnx, '--backend', 'onnxruntime',
                 '--out-dir', tmp_path / 'cli')
    ours = gpd.read_file(out)
    cli = gpd.read_file(tmp_path / 'cli' / 'OSBS_029.gpkg')
    assert len(ours) == len(cli) > 0 and ours.crs == cli.crs
    for a, b in zip(ours.geometry, cli.geometry):
        assert a.equals_exact(b, 1e-6)


def test_pytorch_backend_without_checkpoint_says_what_to_choose(
        qgis_profile, osbs, tmp_path):
    tif, _ = osbs
    proc = qgis_process(qgis_profile, 'run', 'mmretina:detect', '--',
                        f'INPUT={tif}', f'MODEL={DF_CONFIG}',
                        f'OUTPUT={tmp_path / "x.gpkg"}')
    assert proc.returncode != 0
    assert 'choose the onnxruntime or openvino backend' in proc.stdout
