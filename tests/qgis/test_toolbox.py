"""The algorithms as QGIS's Processing Toolbox runs them (toolbox.py, with
QGIS's own python3, headless): a task on QGIS's task manager, the outputs
loaded into the project with the plugin's styles, Cancel from the main
thread; and the picture of docs/user_guides/qgis.md, drawn by QGIS's map
renderer from the project the detect algorithm left.

``MMRETINA_UPDATE_DOCS_IMAGES=1`` with ``MMRETINA_GUIDE_CHECKPOINT`` (a
trained checkpoint; ``MMRETINA_GUIDE_CONFIG``, default the DeepForest
config) writes the picture to docs/images/qgis_osbs_029.jpg:
tools/render_qgis_guide_image.sh does that."""
import json
import os
import os.path as osp
import shutil

import pytest

from qgis_harness import DF_CONFIG, REPO, toolbox

GUIDE_IMAGE = osp.join(REPO, 'docs', 'images', 'qgis_osbs_029.jpg')
# the plugin's outline colours by score (algorithms.score_renderer)
SCORE_COLORS = ('#ffd92f', '#fdae61', '#f46d43', '#d73027')
ERROR_COLORS = {'True positives': '#009e73', 'False positives': '#d55e00',
                'Misses': '#0072b2'}


def _near(img, hex_colors, tol=60):
    """Fraction of the pixels of ``img`` (H x W x 3, uint8) within L1
    distance ``tol`` of one of ``hex_colors``."""
    import numpy as np
    img = img.astype(int)
    near = np.zeros(img.shape[:2], bool)
    for h in hex_colors:
        rgb = [int(h[i:i + 2], 16) for i in (1, 3, 5)]
        near |= np.abs(img - rgb).sum(-1) < tol
    return near.mean()


def test_cancel_in_the_toolbox_stops_the_child_and_loads_no_layer(
        qgis_profile, osbs, df_checkpoint, tmp_path):
    """Detect run as the Toolbox runs it, at GSD 0.02 m (the raster read
    5x finer: 25 windows), Cancel clicked (in the main thread) as soon as
    the progress bar moves, while the child works through the windows: the
    task fails with "canceled", the child that was running is gone, and the
    project holds the raster and no detections layer."""
    tif, _ = osbs
    config, ckpt = df_checkpoint
    out = tmp_path / 'detections.gpkg'
    res = toolbox(qgis_profile, dict(
        algorithm='mmretina:detect', rasters=[tif],
        parameters=dict(INPUT=tif, MODEL=config, CHECKPOINT=ckpt,
                        GSD='0.02', OUTPUT=str(out)),
        load_outputs=['OUTPUT'], cancel_at_progress=True))
    assert res['ok'] is False and 'mmretina: canceled' in res['errors'], res
    assert 0 < res['cancel']['progress'] < 50, res  # early in the run
    assert res['cancel']['alive_before'], res  # canceled while it ran
    assert res['cancel']['alive_after'] == [], res
    assert [layer['type'] for layer in res['layers']] == ['raster']
    assert not out.exists()


def test_guide_picture_detect_loads_a_layer_styled_by_score_and_qgis_draws_it(
        qgis_profile, osbs, request, tmp_path):
    """Detect run as the Toolbox runs it on OSBS_029.tif, loaded in a
    project: the detections layer is loaded above the raster with the
    plugin's style (outlines graded by score), and QGIS's map renderer
    draws the project to a 600 px JPEG whose pixels show the raster and the
    score colours. With MMRETINA_UPDATE_DOCS_IMAGES=1 it becomes the guide's
    picture."""
    gpd = pytest.importorskip('geopandas')
    import numpy as np
    import rasterio
    from PIL import Image

    update = os.environ.get('MMRETINA_UPDATE_DOCS_IMAGES') == '1'
    trained = os.environ.get('MMRETINA_GUIDE_CHECKPOINT')
    if update and not trained:
        pytest.fail('MMRETINA_UPDATE_DOCS_IMAGES=1 needs '
                    'MMRETINA_GUIDE_CHECKPOINT=path/to/trained.pth: the '
                    'guide shows a trained model, not the random weights of '
                    'the tests (tools/render_qgis_guide_image.sh)')
    if trained:
        config = os.environ.get('MMRETINA_GUIDE_CONFIG', DF_CONFIG)
        ckpt = trained
    else:
        config, ckpt = request.getfixturevalue('df_checkpoint')
    tif, _ = osbs
    out = tmp_path / 'detections.gpkg'
    picture = tmp_path / 'qgis_osbs_029.jpg'
    res = toolbox(qgis_profile, dict(
        algorithm='mmretina:detect', rasters=[tif],
        parameters=dict(INPUT=tif, MODEL=config, CHECKPOINT=ckpt,
                        SCORE_THR=0.3, OUTPUT=str(out)),
        load_outputs=['OUTPUT'], render=dict(path=str(picture), width=600)))
    assert res['ok'], res['errors'] + res['log'][-10:]
    boxes, raster = res['layers']  # top first
    assert raster['type'] == 'raster' and raster['source'] == tif
    assert boxes['source'] == str(out) and boxes['crs'] == 'EPSG:32617'
    assert boxes['features'] == len(gpd.read_file(out)) > 0
    assert boxes['renderer'] == 'graduatedSymbol'
    assert boxes['attribute'] == 'score'
    assert tuple(boxes['colors']) == SCORE_COLORS

    img = Image.open(picture)
    assert img.format == 'JPEG'
    with rasterio.open(tif) as r:
        (left, bottom, right, top), bands = r.bounds, r.read()[:3]
    assert img.size == (600, round(600 * (top - bottom) / (right - left)))
    pixels = np.asarray(img.convert('RGB'))
    assert pixels.std() > 20  # the raster is drawn, not a blank canvas
    # the outlines in the score colours; the raster alone has none of them
    assert _near(bands.transpose(1, 2, 0), SCORE_COLORS) < 0.001
    assert _near(pixels, SCORE_COLORS) > 0.01
    size = picture.stat().st_size
    assert size < 300_000, f'{size} bytes: too large for the guide'
    if update:
        shutil.copy(picture, GUIDE_IMAGE)
        print(f'\nwrote {GUIDE_IMAGE}: {boxes["features"]} boxes of '
              f'{ckpt} (score >= 0.3), {size // 1000} kB')


def test_evaluate_in_the_toolbox_loads_the_three_error_layers(
        qgis_profile, osbs, df_checkpoint, tmp_path):
    """Evaluate run as the Toolbox runs it, with the dialog's defaults
    (the summary a temporary layer, MATCHES skipped) and two error layers
    saved to GeoPackages: the project gets the summary and the three error
    layers, named as the dialog names them, each in its colour, with as
    many features as summary.json counts true positives, false positives
    and misses."""
    tif, labels = osbs
    config, ckpt = df_checkpoint
    res = toolbox(qgis_profile, dict(
        algorithm='mmretina:evaluate', rasters=[tif],
        parameters=dict(INPUT=tif, LABELS=labels, MODEL=config,
                        CHECKPOINT=ckpt, SCORE_THR=0.1,
                        SUMMARY='TEMPORARY_OUTPUT',
                        TRUE_POSITIVES=str(tmp_path / 'tp.gpkg'),
                        FALSE_POSITIVES='TEMPORARY_OUTPUT',
                        MISSES=str(tmp_path / 'misses.gpkg'),
                        OUTPUT_FOLDER=str(tmp_path / 'eval')),
        load_outputs=['SUMMARY', 'TRUE_POSITIVES', 'FALSE_POSITIVES',
                      'MISSES']))
    assert res['ok'], res['errors'] + res['log'][-10:]
    overall = json.loads((tmp_path / 'eval' / 'summary.json').read_text())[
        'overall']
    tp = overall['tp']
    counts = {'True positives': tp,
              'False positives': overall['n_pred'] - tp,
              'Misses': overall['n_gt'] - tp}
    assert min(counts.values()) > 0, counts
    layers = {layer['name']: layer for layer in res['layers']}
    assert set(layers) == set(counts) | {'Summary', 'OSBS_029.tif'}
    for name, n in counts.items():
        assert layers[name]['features'] == n, name
        assert layers[name]['crs'] == 'EPSG:32617'
        assert layers[name]['renderer'] == 'singleSymbol'
        assert layers[name]['colors'] == [ERROR_COLORS[name]]
    assert layers['True positives']['source'].startswith(
        str(tmp_path / 'tp.gpkg'))
    assert res['results']['RECALL'] == pytest.approx(overall['recall'])
