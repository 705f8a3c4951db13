"""The oriented chain end to end at CI size (issue 29): a tiny oriented demo
set in DOTA's layout -> ``mmretina dota split`` (patches) -> tools/train.py
a handful of iterations -> tools/test.py prints mmrotate's DOTA mAP. The
figures are not checked (three iterations learn nothing); that each step
runs on the previous one's output, and that the metric is computed on the
test patches' labels, is. About 50 s on 2 cores, 20 of them in mmrotate's
eval_rbbox_map, which starts a pool of 4 spawned processes. The
axis-aligned twin's config is checked in tests/configs and its metric in
tests/evaluation; tools/run_oriented_demo.sh runs both."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from mmretina.datasets.converters.oriented_demo import make_oriented_demo
from mmretina.datasets.converters.dota_split import split_dota

pytest.importorskip('mmrotate')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ROTATED = osp.join(REPO, 'configs', 'rotated')
CLASSES = 'small-vehicle,ship'


def run(*args, timeout=240):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep +
               os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='2')
    out = subprocess.run([sys.executable, *args], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-4000:]
    return out.stdout


@pytest.fixture(scope='module')
def patches(tmp_path_factory):
    """DOTA-layout scenes of 256 px cut into 128 px patches (gap 32): the
    train split by the command line, test by the library."""
    from tests.df_fixtures import _wheel
    tmp = tmp_path_factory.mktemp('oriented_chain')
    raw, root = str(tmp / 'raw'), str(tmp / 'split')
    make_oriented_demo(raw, wheel=_wheel(), seed=1, size=256,
                       num_images=dict(train=1, val=0, test=1),
                       log=lambda s: None)
    run('-m', 'mmretina', 'dota', 'split',
        '--img-dirs', osp.join(raw, 'train', 'images'),
        '--ann-dirs', osp.join(raw, 'train', 'annfiles'),
        '--save-dir', osp.join(root, 'train'), '--sizes', '128',
        '--gaps', '32', '--classes', CLASSES)
    for split in ('test', ):
        split_dota([osp.join(raw, split, 'images')], osp.join(root, split),
                   [osp.join(raw, split, 'annfiles')], sizes=(128, ),
                   gaps=(32, ), log=lambda s: None)
    return root


def options(root):
    # one epoch on the 128 px patches as they are (no upscaling), no val
    return ['--cfg-options'] + [
        f'{loader}.dataset.data_root={root}/'
        for loader in ('train_dataloader', 'test_dataloader')
    ] + ['train_cfg.max_epochs=1', 'default_hooks.checkpoint.interval=1',
         'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
         'train_dataloader.dataset.pipeline.3.scale=(128,128)',
         'test_dataloader.dataset.pipeline.1.scale=(128,128)',
         'model.test_cfg.max_per_img=50']


def labelled_objects(ann_dir):
    return sum(1 for f in os.listdir(ann_dir)
               for line in open(osp.join(ann_dir, f)) if line.strip())


def test_split_train_test_prints_dota_map(patches, tmp_path):
    work = str(tmp_path / 'work')
    cfg = osp.join(ROTATED, 'rotated_retinanet_r18_fpn_oriented_demo.py')
    log = run('tools/train.py', cfg, '--work-dir', work, *options(patches))
    iters = re.findall(r'Epoch\(train\) \[1\]\[(\d+)/(\d+)\]', log)
    assert iters and iters[-1][0] == iters[-1][1], log[-2000:]
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    out = run('tools/test.py', cfg, ckpt, '--work-dir', work,
              *options(patches))
    ap = re.search(r'dota/AP50: ([0-9.]+)', out)
    assert ap, out[-3000:]
    assert 0.0 <= float(ap.group(1)) <= 1.0
    # mmrotate's per-class table: the ground truths of the test patches
    gts = sum(int(n) for n in re.findall(
        r'\|\s*(?:small-vehicle|ship)\s*\|\s*(\d+)\s*\|', out))
    assert gts == labelled_objects(osp.join(patches, 'test', 'annfiles'))
