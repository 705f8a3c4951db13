"""docs/user_guides/gis_training.md, run: every bash block of the guide, in
order, in a scratch directory laid out like the repository (``configs/``
copied, ``tools/`` linked), at a tiny size.

The commands are read from the markdown, not copied. Changes, for time and
because there is no internet here: the DeepForest wheel is put where the
guide's ``pip download`` puts it (from the cache the other tests use;
``pip download`` itself runs only when there is no cached wheel); training
runs one epoch (``--cfg-options train_cfg.max_epochs=1`` and no data
workers), so the checkpoint is ``epoch_1.pth``, not ``epoch_24.pth``; and
the project config gets a narrow ResNet-18 trained from scratch
(:data:`TINY_MODEL`, appended right after the guide writes it; there are no
ImageNet weights of its width): one R-50 iteration takes ~50 s on the
shared 2-core CPU, and every tool of the guide loads the model.
"""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

gpd = pytest.importorskip('geopandas')
pytest.importorskip('rasterio')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GUIDE = osp.join(REPO, 'docs', 'user_guides', 'gis_training.md')
WHEEL = 'deepforest-2.1.0-py3-none-any.whl'
TRAIN_OPTIONS = (' --cfg-options train_cfg.max_epochs=1 '
                 'train_dataloader.num_workers=0 '
                 'train_dataloader.persistent_workers=False '
                 'val_dataloader.num_workers=0 '
                 'val_dataloader.persistent_workers=False')


# appended to configs/gis_osbs.py: the same recipe, a narrow ResNet-18
# from scratch (mmdet's ResNet init; nothing frozen)
TINY_MODEL = """
model = dict(
    backbone=dict(depth=18, base_channels=16, init_cfg=None,
                  frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    bbox_head=dict(num_classes=len(classes), in_channels=32, feat_channels=32,
                   stacked_convs=1))
"""


def guide_script(have_wheel: bool) -> str:
    with open(GUIDE) as f:
        blocks = re.findall(r'```bash\n(.*?)```', f.read(), re.S)
    script = '\n'.join(blocks)
    assert 'tools/train.py configs/gis_osbs.py' in script
    if have_wheel:
        script = re.sub(r'^pip download .*$', '# (wheel cached)', script,
                        flags=re.M)
    script = re.sub(r'(tools/train\.py configs/gis_osbs\.py[^\n]*)',
                    r'\1' + TRAIN_OPTIONS, script)
    config = "cat > configs/gis_osbs.py <<'EOF'\n"
    start = script.index(config)
    end = script.index('\nEOF\n', start) + len('\nEOF\n')
    script = (script[:end] + "cat >> configs/gis_osbs.py <<'EOF'"
              + TINY_MODEL + 'EOF\n' + script[end:])
    return script.replace('epoch_24.pth', 'epoch_1.pth')


def cached_wheel():
    path = os.environ.get('MMRETINA_DEEPFOREST_WHEEL') or osp.join(
        osp.expanduser('~'), '.cache', 'mmretina', WHEEL)
    return path if osp.isfile(path) else None


def test_gis_training_tutorial_runs(tmp_path):
    shutil.copytree(osp.join(REPO, 'configs'), tmp_path / 'configs')
    os.symlink(osp.join(REPO, 'tools'), tmp_path / 'tools')
    wheel = cached_wheel()
    if wheel:
        (tmp_path / 'data' / 'gis' / 'wheel').mkdir(parents=True)
        shutil.copy(wheel, tmp_path / 'data' / 'gis' / 'wheel' / WHEEL)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='2',
               MKL_NUM_THREADS='2')
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    proc = subprocess.run(
        ['bash', '-e', '-o', 'pipefail', '-c', guide_script(bool(wheel))],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=1500)
    out = proc.stdout
    if proc.returncode and not wheel and 'pip download' in out:
        pytest.skip('the deepforest wheel could not be downloaded')
    assert proc.returncode == 0, out[-6000:]
    # 1. the layer in EPSG:4326
    crowns = gpd.read_file(tmp_path / 'data/gis/crowns.gpkg')
    assert crowns.crs.to_epsg() == 4326 and len(crowns) == 61
    # 2. chips and splits
    ann = tmp_path / 'data/gis/chips/annotations'
    train = json.load(open(ann / 'train.json'))
    val = json.load(open(ann / 'val.json'))
    assert train['images'] and val['images']
    assert [c['name'] for c in train['categories']] == ['Tree']
    assert "classes = ('Tree',)" in out
    # the narrow backbone starts from scratch: no weights are fetched
    assert 'load model from' not in out
    # 5. the field evaluation: table, summary, matches, PNG
    work = tmp_path / 'work_dirs/gis_osbs'
    for sub in ('field', 'field_val'):
        s = json.load(open(work / sub / 'summary.json'))
        for k in ('precision', 'recall', 'mAP', 'mAP50'):
            assert k in s['overall']
        assert s['per_raster'] and 'per_site' in s
        assert (work / sub / 'matches.csv').is_file()
    s = json.load(open(work / 'field' / 'summary.json'))
    assert list(s['per_site']) == ['OSBS']
    assert s['overall']['n_gt'] == 61
    assert (work / 'field' / 'OSBS_029_matches.png').is_file()
    assert '-- per site' in out and 'OSBS' in out
    # 6. the GeoPackage in the raster's CRS
    det = gpd.read_file(work / 'detections' / 'OSBS_029.gpkg')
    assert det.crs.to_epsg() == 32617
    assert 'crowns, EPSG:32617' in out
