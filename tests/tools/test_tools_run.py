"""End-to-end runs of tools/ on a tiny synthetic COCO-format set: train,
test (COCO mAP), resume, 2-process CPU distributed training, inference to a
PNG, --amp (bf16 on a CPU) and its guard. One tiny checkpoint is trained
once per module."""
import glob
import os.path as osp
import pickle
import re
import shutil
import sys

import pytest
import torch

from mmretina.engine.optimizers import bf16_supported

MAX_ITERS = 4


def _load_ckpt(path):
    from mmretina.engine.checkpoint import load_checkpoint_file
    return load_checkpoint_file(path, map_location='cpu')


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tiny_data, tools_helpers):
    h = tools_helpers
    root = tmp_path_factory.mktemp('trained')
    config = h.write_tiny_config(
        str(root / 'tiny_retinanet.py'), tiny_data, max_iters=100)
    work_dir = str(root / 'work')
    proc = h.python_tool(
        'train.py', config, '--work-dir', work_dir, '--cfg-options',
        f'train_cfg.max_iters={MAX_ITERS}',
        'default_hooks.checkpoint.interval=2', 'randomness.seed=0')
    assert proc.returncode == 0, proc.stdout[-6000:]
    return dict(
        config=config, work_dir=work_dir, log=proc.stdout,
        ckpt=osp.join(work_dir, f'iter_{MAX_ITERS}.pth'),
        ckpt_half=osp.join(work_dir, f'iter_{MAX_ITERS // 2}.pth'))


def test_train(trained):
    log = trained['log']
    assert f'Iter(train) [{MAX_ITERS}/{MAX_ITERS}]' in log
    assert 'loss_cls' in log and 'loss_bbox' in log
    for ckpt in (trained['ckpt_half'], trained['ckpt']):
        assert osp.isfile(ckpt)
    ckpt = _load_ckpt(trained['ckpt'])
    assert ckpt['meta']['iter'] == MAX_ITERS
    assert 'optimizer' in ckpt and 'param_schedulers' in ckpt
    state = ckpt['state_dict']
    assert any(k.startswith('bbox_head.retina_cls') for k in state)
    # --cfg-options reached the config that was saved
    assert f'max_iters={MAX_ITERS}' in ckpt['meta']['cfg']


def test_test_prints_coco_map(trained, tools_helpers, tmp_path):
    out = tmp_path / 'preds.pkl'
    work_dir = tmp_path / 'test_work'
    proc = tools_helpers.python_tool(
        'test.py', trained['config'], trained['ckpt'], '--work-dir',
        work_dir, '--out', out, '--show-dir', 'painted', '--cfg-options',
        'model.test_cfg.score_thr=0.0')
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert re.search(r'coco/bbox_mAP: \d\.\d+', proc.stdout)
    assert 'coco/bbox_mAP_50:' in proc.stdout
    assert out.is_file() and out.stat().st_size > 0
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 8 and 'pred_instances' in preds[0]
    painted = glob.glob(str(work_dir / '*' / 'painted' / '*.png'))
    assert len(painted) == 8


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='checks the CPU-only gloo path')
def test_dist_test_tta_two_cpu_processes(trained, tools_helpers, tmp_path):
    h = tools_helpers
    env = h.tool_env()
    env['PORT'] = str(h.free_port())
    env['PYTHON'] = sys.executable
    proc = h.run_tool([
        'bash', osp.join(h.TOOLS, 'dist_test.sh'), trained['config'],
        trained['ckpt'], '2', '--tta', '--work-dir',
        str(tmp_path / 'dist_test'), '--cfg-options',
        'model.test_cfg.score_thr=0.0'
    ], env=env)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'DetTTAModel' in proc.stdout
    assert re.search(r'coco/bbox_mAP: \d\.\d+', proc.stdout)


def test_resume_continues_from_saved_iter(trained, tools_helpers, tmp_path):
    work_dir = tmp_path / 'resumed'
    proc = tools_helpers.python_tool(
        'train.py', trained['config'], '--work-dir', work_dir, '--resume',
        trained['ckpt_half'], '--cfg-options',
        f'train_cfg.max_iters={MAX_ITERS}',
        'default_hooks.checkpoint.interval=2')
    assert proc.returncode == 0, proc.stdout[-6000:]
    log = proc.stdout
    assert f'resumed epoch: 0, iter: {MAX_ITERS // 2}' in log
    # training restarts after the saved iteration, not from 1
    assert f'Iter(train) [{MAX_ITERS // 2 + 1}/{MAX_ITERS}]' in log
    assert f'Iter(train) [1/{MAX_ITERS}]' not in log
    assert not (work_dir / f'iter_{MAX_ITERS // 2}.pth').exists()
    ckpt = _load_ckpt(str(work_dir / f'iter_{MAX_ITERS}.pth'))
    assert ckpt['meta']['iter'] == MAX_ITERS


def test_auto_resume_from_work_dir(trained, tools_helpers, tmp_path):
    # `--resume` without a path resumes from work_dir/last_checkpoint
    work_dir = tmp_path / 'auto'
    shutil.copytree(trained['work_dir'], work_dir)
    with open(work_dir / 'last_checkpoint', 'w') as f:
        f.write(str(work_dir / f'iter_{MAX_ITERS}.pth'))
    proc = tools_helpers.python_tool(
        'train.py', trained['config'], '--work-dir', work_dir, '--resume',
        '--cfg-options', f'train_cfg.max_iters={MAX_ITERS + 1}',
        'default_hooks.checkpoint.interval=1', 'val_cfg=None',
        'val_dataloader=None', 'val_evaluator=None')
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert f'resumed epoch: 0, iter: {MAX_ITERS}' in proc.stdout
    assert f'Iter(train) [{MAX_ITERS + 1}/{MAX_ITERS + 1}]' in proc.stdout
    ckpt = _load_ckpt(str(work_dir / f'iter_{MAX_ITERS + 1}.pth'))
    assert ckpt['meta']['iter'] == MAX_ITERS + 1


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='checks the CPU-only gloo path')
def test_dist_train_two_cpu_processes(trained, tools_helpers, tmp_path):
    h = tools_helpers
    env = h.tool_env()
    env['PORT'] = str(h.free_port())
    env['PYTHON'] = sys.executable
    work_dir = tmp_path / 'dist'
    proc = h.run_tool([
        'bash', osp.join(h.TOOLS, 'dist_train.sh'), trained['config'], '2',
        '--work-dir', str(work_dir), '--cfg-options', 'train_cfg.max_iters=2',
        'default_hooks.checkpoint.interval=2', 'val_cfg=None',
        'val_dataloader=None', 'val_evaluator=None'
    ], env=env)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'Distributed training: True' in proc.stdout
    assert 'GPU number: 2' in proc.stdout
    assert "backend='gloo'" in proc.stdout
    assert 'Iter(train) [2/2]' in proc.stdout
    ckpt = _load_ckpt(str(work_dir / 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2


def test_infer_writes_png(trained, tiny_data, tools_helpers, tmp_path):
    import cv2
    image = osp.join(tiny_data, 'images', '0000.png')
    out = tmp_path / 'pred.png'
    proc = tools_helpers.python_tool('infer.py', image, trained['config'],
                                     trained['ckpt'], '--out', out,
                                     '--score-thr', '0.0', '--device', 'cpu',
                                     '--cfg-options',
                                     'model.test_cfg.score_thr=0.0')
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'detections with score >= 0.0' in proc.stdout
    m = re.search(r'^(\d+) detections with score', proc.stdout, re.M)
    assert m and int(m.group(1)) > 0, proc.stdout[-3000:]
    assert out.is_file()
    with open(out, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    drawn = cv2.imread(str(out))
    src = cv2.imread(image)
    assert drawn.shape == src.shape
    assert (drawn != src).any(), 'no detection was drawn'


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a CPU machine')
def test_amp_without_gpu_or_cpu_bf16_fails_clearly(tools_helpers, tmp_path,
                                                   monkeypatch, capsys):
    # in-process (argument parsing only), to spare a subprocess start-up
    from mmretina.cli import train
    monkeypatch.setattr(train, '_cpu_bf16', lambda: False)
    monkeypatch.setenv('LOCAL_RANK', '0')  # restored after the test
    monkeypatch.setattr(sys, 'argv', [
        'train.py', 'some_config.py', '--amp', '--work-dir',
        str(tmp_path / 'amp')
    ])
    with pytest.raises(SystemExit) as exc:
        train.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert '--amp needs a CUDA' in err and 'native bfloat16' in err
    assert not (tmp_path / 'amp').exists()


@pytest.mark.skipif(torch.cuda.is_available() or
                    not bf16_supported('cpu'),
                    reason='needs a CPU with native bfloat16 and no GPU')
def test_amp_on_cpu_trains_in_bf16(trained, tools_helpers, tmp_path):
    work_dir = tmp_path / 'amp'
    proc = tools_helpers.python_tool(
        'train.py', trained['config'], '--amp', '--work-dir', str(work_dir),
        '--cfg-options', 'train_cfg.max_iters=2',
        'default_hooks.checkpoint.interval=2')
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'bfloat16 autocast on the CPU' in proc.stdout
    assert 'Iter(train) [2/2]' in proc.stdout
    ckpt = _load_ckpt(str(work_dir / 'iter_2.pth'))
    assert "type='mmretina.BF16OptimWrapper'" in ckpt['meta']['cfg']
    assert all(v.dtype != torch.bfloat16 for v in ckpt['state_dict'].values())
