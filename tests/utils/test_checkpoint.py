"""mmretina.utils.checkpoint: full mmengine checkpoints load under torch's
``weights_only=True`` (default since torch 2.6); anything else is still
refused."""
import io
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.utils import digit_version

from mmretina.utils import (register_safe_checkpoint_globals,
                            safe_checkpoint_globals)

# torch>=2.6: weights_only=True by default, user allowlists available
needs_safe_globals = pytest.mark.skipif(
    not all(
        hasattr(torch.serialization, f)
        for f in ('add_safe_globals', 'get_safe_globals',
                  'clear_safe_globals'))
    or digit_version(torch.__version__) < digit_version('2.6.0'),
    reason='needs torch>=2.6 (weights_only=True by default)')


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=(out**2).mean())
        return out


def _runner(work_dir, max_iters, **kwargs):
    from mmengine.runner import Runner
    data = [dict(inputs=torch.full((2, ), float(i))) for i in range(8)]
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=f'toy_{os.path.basename(str(work_dir))}_{max_iters}',
        train_dataloader=dict(
            dataset=data,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            batch_size=2,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9),
            clip_grad=dict(max_norm=35, norm_type=2)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=2),
            dict(type='MultiStepLR', milestones=[2], by_epoch=False)
        ],
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=max_iters, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        log_processor=dict(by_epoch=False),
        default_scope='mmengine',
        **kwargs)


@pytest.fixture(scope='module')
def mmengine_ckpt(tmp_path_factory):
    """A real checkpoint written by mmengine's Runner after 3 iterations."""
    work_dir = tmp_path_factory.mktemp('toy_runner')
    _runner(work_dir, max_iters=3).train()
    path = work_dir / 'iter_3.pth'
    assert path.is_file()
    return str(path)


@pytest.fixture
def clean_allowlist():
    """Run a test with torch's user allowlist emptied; restore it after."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


def _save(obj, path, **kwargs):
    torch.save(obj, str(path), **kwargs)
    return str(path)


@needs_safe_globals
def test_plain_torch_refuses_mmengine_checkpoint(mmengine_ckpt,
                                                 clean_allowlist):
    # the problem this module solves: mmengine calls torch.load without
    # weights_only, so torch>=2.6 refuses its own checkpoints
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(mmengine_ckpt, map_location='cpu')


@needs_safe_globals
def test_full_checkpoint_loads(mmengine_ckpt, clean_allowlist):
    register_safe_checkpoint_globals()
    register_safe_checkpoint_globals()  # idempotent
    ckpt = torch.load(mmengine_ckpt, map_location='cpu')  # as mmengine does
    assert set(ckpt) >= {
        'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'
    }
    assert ckpt['meta']['iter'] == 3
    hub = ckpt['message_hub']
    loss = hub['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer)
    assert len(loss.data[0]) >= 1
    assert np.isfinite(loss.mean()) and loss.statistics('max') >= loss.min()
    assert isinstance(hub['runtime_info']['eta'], np.floating)
    assert hub['runtime_info']['max_iters'] == 3


@needs_safe_globals
def test_mmengine_load_and_resume(mmengine_ckpt, tmp_path, clean_allowlist):
    from mmengine.runner import load_checkpoint
    register_safe_checkpoint_globals()
    model = ToyModel()
    ckpt = load_checkpoint(model, mmengine_ckpt, map_location='cpu')
    assert torch.equal(model.linear.weight,
                       ckpt['state_dict']['linear.weight'])

    runner = _runner(
        tmp_path, max_iters=4, resume=True, load_from=mmengine_ckpt)
    runner.train()
    assert runner.iter == 4
    resumed = torch.load(str(tmp_path / 'iter_4.pth'), map_location='cpu')
    assert resumed['meta']['iter'] == 4
    # the history buffers continued from the checkpoint's entries
    before = len(ckpt['message_hub']['log_scalars']['train/loss'].data[0])
    after = len(resumed['message_hub']['log_scalars']['train/loss'].data[0])
    assert after == before + 1


class Foreign:
    """A class no checkpoint has any business containing."""

    def __init__(self):
        self.payload = 1


class Exploit:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class GetattrExploit:

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


@needs_safe_globals
def test_foreign_object_refused(tmp_path):
    register_safe_checkpoint_globals()
    path = _save({'state_dict': {}, 'meta': {'x': Foreign()}},
                 tmp_path / 'foreign.pth')
    with pytest.raises(pickle.UnpicklingError, match='Foreign'):
        torch.load(path, map_location='cpu')


@needs_safe_globals
def test_os_system_reduce_refused(tmp_path):
    register_safe_checkpoint_globals()
    marker = tmp_path / 'pwned'
    path = _save({'meta': Exploit(marker)}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location='cpu')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location='cpu', weights_only=True)
    assert not marker.exists()


@needs_safe_globals
@pytest.mark.parametrize('obj, name', [
    (HistoryBuffer, 'update'),
    (HistoryBuffer, '__init__'),
    (HistoryBuffer, '_statistics_methods'),
    (np.ndarray, 'tofile'),
    (HistoryBuffer, 'register_statistics'),
    (torch.Tensor, 'tolist'),
])
def test_getattr_is_restricted(tmp_path, obj, name):
    # HistoryBuffer needs getattr(HistoryBuffer, 'min'); nothing else
    register_safe_checkpoint_globals()
    path = _save({'meta': GetattrExploit(obj, name)}, tmp_path / 'ga.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location='cpu')


@needs_safe_globals
def test_object_arrays_refused(tmp_path):
    register_safe_checkpoint_globals()
    ok = _save({'a': np.arange(3.0), 'b': np.int64(3), 'c': np.array([True])},
               tmp_path / 'numeric.pth')
    loaded = torch.load(ok, map_location='cpu')
    assert loaded['a'].tolist() == [0.0, 1.0, 2.0] and loaded['b'] == 3
    bad = _save({'a': np.array(['x', 1], dtype=object)}, tmp_path / 'obj.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(bad, map_location='cpu')


@needs_safe_globals
def test_numpy1_module_path_accepted(tmp_path):
    # checkpoints written with numpy<2 name numpy.core.multiarray.*
    register_safe_checkpoint_globals()
    buf = io.BytesIO()
    torch.save({'eta': np.float64(1.5), 'hist': np.arange(4.0)}, buf,
               _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    if b'numpy._core.multiarray' in raw:
        raw = raw.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
    assert b'numpy.core.multiarray' in raw
    loaded = torch.load(io.BytesIO(raw), map_location='cpu')
    assert loaded['eta'] == 1.5 and loaded['hist'].tolist() == [0, 1, 2, 3]


def test_allowlist_contents():
    entries = safe_checkpoint_globals()
    names = set()
    for e in entries:
        if isinstance(e, tuple):
            names.add(e[1])
        else:
            names.add(f'{e.__module__}.{e.__qualname__}')
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names
    assert 'builtins.getattr' in names
    assert 'numpy._core.multiarray._reconstruct' in names
    assert 'numpy.core.multiarray.scalar' in names
    # nothing that executes code or holds arbitrary objects
    for bad in ('builtins.eval', 'builtins.exec', 'os.system',
                'numpy.dtypes.ObjectDType', 'builtins.object'):
        assert bad not in names
    getattr_stub = dict((n, e) for e in entries if isinstance(e, tuple)
                        for n in [e[1]])['builtins.getattr'][0]
    assert getattr_stub is not getattr


@needs_safe_globals
def test_import_mmretina_registers_allowlist():
    # `import mmretina` must apply the fix so that configs' load_from,
    # --resume and init_detector work everywhere
    import subprocess
    import sys
    code = ('import torch, mmretina\n'
            'from mmengine.logging import HistoryBuffer\n'
            'assert HistoryBuffer in torch.serialization.get_safe_globals()\n')
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, '-c', code], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
