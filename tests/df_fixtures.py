"""Fixtures for the geo / inference / deployment tests (a pytest plugin of
tests/conftest.py): real DeepForest images
(from the ``deepforest==2.1.0`` wheel, downloaded once with pip into
``~/.cache/mmretina``, or ``$MMRETINA_DEEPFOREST_WHEEL``) and the DeepForest
RetinaNet with random weights whose classifier bias is raised, so that it
has a full set of detections (the tests compare two runs of the same
weights, not accuracy)."""
import os
import os.path as osp
import subprocess
import sys
import tempfile
import zipfile

import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DF_CONFIG = osp.join(REPO_ROOT, 'configs', 'retinanet_r18_fpn_deepforest.py')
WHEEL = 'deepforest-2.1.0-py3-none-any.whl'
YELL = '2019_YELL_2_541000_4977000_image_crop'
IMAGES = ('OSBS_029.png', 'OSBS_029.tif', 'OSBS_029.xml', 'SOAP_061.png',
          YELL + '.png', YELL + '.xml')


def _wheel() -> str:
    path = os.environ.get('MMRETINA_DEEPFOREST_WHEEL')
    if path:
        if not osp.isfile(path):
            pytest.fail(f'MMRETINA_DEEPFOREST_WHEEL={path} does not exist')
        return path
    cache = osp.join(osp.expanduser('~'), '.cache', 'mmretina')
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError:  # read-only home
        cache = osp.join(tempfile.gettempdir(), 'mmretina_cache')
        os.makedirs(cache, exist_ok=True)
    path = osp.join(cache, WHEEL)
    if not osp.isfile(path):
        proc = subprocess.run(
            [sys.executable, '-m', 'pip', 'download', '--no-deps', '-q',
             'deepforest==2.1.0', '-d', cache],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=300)
        if proc.returncode != 0 or not osp.isfile(path):
            pytest.skip('the deepforest==2.1.0 wheel (real demo images) '
                        'could not be downloaded: ' + proc.stdout[-500:])
    return path


@pytest.fixture(scope='session')
def df_images(tmp_path_factory):
    """name -> path of real images (and their VOC annotations) of the
    DeepForest wheel."""
    out = tmp_path_factory.mktemp('deepforest_images')
    with zipfile.ZipFile(_wheel()) as z:
        for name in IMAGES:
            with open(out / name, 'wb') as f:
                f.write(z.read('deepforest/data/' + name))
    return {name: str(out / name) for name in IMAGES}


def biased_detector(config=DF_CONFIG, seed=0, bias=-1.5):
    """The config's detector with random weights (seed) and the classifier
    bias at ``bias`` (sigmoid(-1.5) = 0.18: hundreds of detections)."""
    from mmdet.apis import init_detector
    torch.manual_seed(seed)
    model = init_detector(config, None, device='cpu')
    with torch.no_grad():
        model.bbox_head.retina_cls.bias.fill_(bias)
    model.dataset_meta = dict(classes=('tree', ), palette=[(34, 139, 34)])
    return model


@pytest.fixture(scope='session')
def df_checkpoint(tmp_path_factory):
    """(config, checkpoint) of the biased random DeepForest detector."""
    model = biased_detector()
    path = str(tmp_path_factory.mktemp('df_ckpt') / 'biased_random.pth')
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=model.dataset_meta)), path)
    return DF_CONFIG, path


@pytest.fixture(scope='session')
def df_model(df_checkpoint):
    from mmdet.apis import init_detector
    config, ckpt = df_checkpoint
    return init_detector(config, ckpt, device='cpu')


def tool_env(threads=1):
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        env[var] = str(threads)
    return env


@pytest.fixture(scope='session')
def run_tool():
    """run_tool('infer.py', *args) -> CompletedProcess (stdout+stderr)."""

    def run(tool, *args, timeout=300):
        return subprocess.run(
            [sys.executable, osp.join(REPO_ROOT, 'tools', tool),
             *map(str, args)],
            cwd=REPO_ROOT, env=tool_env(2), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=timeout)

    return run


@pytest.fixture(scope='session')
def df_onnx(df_checkpoint, df_images, run_tool, tmp_path_factory):
    """The biased DeepForest detector exported by
    tools/deployment/export_onnx.py --dynamic (with its --check run)."""
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    config, ckpt = df_checkpoint
    out = tmp_path_factory.mktemp('onnx') / 'deepforest.onnx'
    proc = run_tool(osp.join('deployment', 'export_onnx.py'), config, ckpt,
                    '--out', out, '--dynamic', '--check',
                    df_images['OSBS_029.png'])
    assert proc.returncode == 0, proc.stdout[-5000:]
    return str(out), proc.stdout
