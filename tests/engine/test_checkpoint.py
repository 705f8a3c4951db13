"""Loading mmengine checkpoints under weights_only=True: what loads, what is
refused (pickles written by Python's pickler and by hand), and that the
allowlist applies only around mmengine's loads."""
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.utils import digit_version

from mmretina.engine.checkpoint import (allow_checkpoint_globals,
                                        load_checkpoint_file,
                                        safe_checkpoint_globals)
from mmretina.testing import scope_and_logger_kept

# the Runners built here leave mmengine's current scope and logger alone
pytestmark = pytest.mark.usefixtures('runner_globals_kept')

# torch>=2.6: weights_only=True by default, scoped allowlists available
needs_safe_globals = pytest.mark.skipif(
    not hasattr(torch.serialization, 'safe_globals')
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
    with scope_and_logger_kept():  # built before the tests' fixture
        _runner(work_dir, max_iters=3).train()
    path = work_dir / 'iter_3.pth'
    assert path.is_file()
    return str(path)


def _save(obj, path, **kwargs):
    torch.save(obj, str(path), **kwargs)
    return str(path)


@needs_safe_globals
def test_plain_torch_refuses_mmengine_checkpoint(mmengine_ckpt):
    # the problem this module solves, and proof that importing mmretina
    # leaves torch's own allowlist alone
    import mmretina  # noqa: F401
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(mmengine_ckpt, map_location='cpu')
    assert not any('HistoryBuffer' in repr(g)
                   for g in torch.serialization.get_safe_globals())


@needs_safe_globals
def test_full_checkpoint_loads(mmengine_ckpt):
    ckpt = load_checkpoint_file(mmengine_ckpt, map_location='cpu')
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
    # the allowlist is gone after the load
    with pytest.raises(pickle.UnpicklingError):
        torch.load(mmengine_ckpt, map_location='cpu')


@needs_safe_globals
def test_mmengine_load_and_resume(mmengine_ckpt, tmp_path):
    import mmretina  # noqa: F401  (installs the scoped loader)
    from mmengine.runner import load_checkpoint
    model = ToyModel()
    ckpt = load_checkpoint(model, mmengine_ckpt, map_location='cpu')
    assert torch.equal(model.linear.weight,
                       ckpt['state_dict']['linear.weight'])

    runner = _runner(
        tmp_path, max_iters=4, resume=True, load_from=mmengine_ckpt)
    runner.train()
    assert runner.iter == 4
    path = str(tmp_path / 'iter_4.pth')
    resumed = load_checkpoint_file(path, map_location='cpu')
    assert resumed['meta']['iter'] == 4
    # the history buffers continued from the checkpoint's entries
    before = len(ckpt['message_hub']['log_scalars']['train/loss'].data[0])
    after = len(resumed['message_hub']['log_scalars']['train/loss'].data[0])
    assert after == before + 1
    # and the resumed run writes mmengine's class, not the stand-in
    with zipfile.ZipFile(path) as z:
        raw = z.read([n for n in z.namelist() if n.endswith('data.pkl')][0])
    assert b'mmengine.logging.history_buffer\nHistoryBuffer' in raw
    assert b'CheckpointHistoryBuffer' not in raw


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
    path = _save({'state_dict': {}, 'meta': {'x': Foreign()}},
                 tmp_path / 'foreign.pth')
    with pytest.raises(pickle.UnpicklingError, match='Foreign'):
        load_checkpoint_file(path)


@needs_safe_globals
def test_os_system_reduce_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = _save({'meta': Exploit(marker)}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint_file(path)
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
    path = _save({'meta': GetattrExploit(obj, name)}, tmp_path / 'ga.pth')
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint_file(path)


@needs_safe_globals
def test_object_arrays_refused(tmp_path):
    ok = _save({'a': np.arange(3.0), 'b': np.int64(3), 'c': np.array([True])},
               tmp_path / 'numeric.pth')
    loaded = load_checkpoint_file(ok)
    assert loaded['a'].tolist() == [0.0, 1.0, 2.0] and loaded['b'] == 3
    bad = _save({'a': np.array(['x', 1], dtype=object)}, tmp_path / 'obj.pth')
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint_file(bad)


@needs_safe_globals
def test_numpy1_module_path_accepted(tmp_path):
    # checkpoints written with numpy<2 name numpy.core.multiarray.*
    buf = io.BytesIO()
    torch.save({'eta': np.float64(1.5), 'hist': np.arange(4.0)}, buf,
               _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    if b'numpy._core.multiarray' in raw:
        raw = raw.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
    assert b'numpy.core.multiarray' in raw
    with allow_checkpoint_globals():
        loaded = torch.load(io.BytesIO(raw), map_location='cpu')
    assert loaded['eta'] == 1.5 and loaded['hist'].tolist() == [0, 1, 2, 3]


# --- hand-written pickle streams (protocol 2 opcodes) ----------------------


def _str(text: str) -> bytes:
    """BINUNICODE."""
    data = text.encode()
    return b'X' + len(data).to_bytes(4, 'little') + data


def _global(module: str, name: str) -> bytes:
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _checkpoint_with_pickle(stream: bytes, path) -> str:
    """A torch zip checkpoint whose data.pkl is ``stream``."""
    buf = io.BytesIO()
    torch.save({}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(str(path), 'w', zipfile.ZIP_STORED) as out:
        for name in src.namelist():
            out.writestr(
                name, stream if name.endswith('data.pkl') else src.read(name))
    return str(path)


HB = ('mmengine.logging.history_buffer', 'HistoryBuffer')


def _hb_getattr(name: str) -> bytes:
    return (_global('builtins', 'getattr') + _global(*HB) + _str(name) +
            b'\x86R')  # TUPLE2, REDUCE


HAND_WRITTEN = {
    # REDUCE on numpy.dtype to an object dtype
    'dtype_object': _global('numpy', 'dtype') + _str('O8') +
    b'\x89\x88\x87R.',
    'dtype_void': _global('numpy', 'dtype') + _str('V8') + b'\x89\x88\x87R.',
    # _reconstruct of an object array (numpy 2 and numpy 1 paths)
    'reconstruct_object': _global('numpy._core.multiarray', '_reconstruct') +
    _global('numpy', 'ndarray') + b'K\x00\x85' + _str('O') + b'\x87R.',
    'reconstruct_object_np1': _global('numpy.core.multiarray',
                                      '_reconstruct') +
    _global('numpy', 'ndarray') + b'K\x00\x85' + _str('O') + b'\x87R.',
    # getattr to anything but a registered statistics method
    'getattr_register': _hb_getattr('register_statistics') + b'.',
    'getattr_class_dict': _hb_getattr('_statistics_methods') + b'.',
    'getattr_dunder': _hb_getattr('__class__') + b'.',
    'getattr_ndarray': _global('builtins', 'getattr') +
    _global('numpy', 'ndarray') + _str('tofile') + b'\x86R.',
    # a HistoryBuffer state that re-registers 'mean' as max
    'history_registers_statistic': _global(*HB) + b')\x81}' +
    _str('statistics_methods') + b'}' + _str('mean') + _hb_getattr('max') +
    b'ssb.',
    # ... or registers a new statistic under another method's name
    'history_new_statistic': _global(*HB) + b')\x81}' +
    _str('statistics_methods') + b'}' + _str('evil') + _hb_getattr('max') +
    b'ssb.',
    # ... or writes an attribute that is not one of its fields
    'history_extra_field': _global(*HB) + b')\x81}' + _str('update') +
    b'K\x01sb.',
}


@needs_safe_globals
@pytest.mark.parametrize('name', list(HAND_WRITTEN))
def test_hand_written_pickles_are_refused(tmp_path, name):
    stats_before = dict(HistoryBuffer._statistics_methods)
    path = _checkpoint_with_pickle(HAND_WRITTEN[name], tmp_path / 'h.pth')
    with pytest.raises(pickle.UnpicklingError, match='mmretina|Unsupported'):
        load_checkpoint_file(path)
    assert HistoryBuffer._statistics_methods == stats_before


@needs_safe_globals
def test_hand_written_history_buffer_with_its_own_statistics_loads(tmp_path):
    """The form mmengine writes: registered methods under their names."""
    stream = (_global(*HB) + b')\x81}' + _str('max_length') + b'K\x05s' +
              _str('statistics_methods') + b'}' + _str('max') +
              _hb_getattr('max') + b'ssb.')
    path = _checkpoint_with_pickle(stream, tmp_path / 'ok.pth')
    buffer = load_checkpoint_file(path)
    assert isinstance(buffer, HistoryBuffer) and buffer.max_length == 5
    assert 'statistics_methods' not in vars(buffer)


def test_allowlist_contents():
    entries = safe_checkpoint_globals()
    names = {}
    for e in entries:
        if isinstance(e, tuple):
            names[e[1]] = e[0]
        else:
            names[f'{e.__module__}.{e.__qualname__}'] = e
    for name in ('mmengine.logging.history_buffer.HistoryBuffer',
                 'builtins.getattr', 'numpy.dtype',
                 'numpy._core.multiarray._reconstruct',
                 'numpy.core.multiarray.scalar'):
        assert name in names
    # stand-ins, never the real objects
    assert names['builtins.getattr'] is not getattr
    assert names['numpy.dtype'] is not np.dtype
    assert names['mmengine.logging.history_buffer.HistoryBuffer'] \
        is not HistoryBuffer
    # nothing that executes code or holds arbitrary objects
    for bad in ('builtins.eval', 'builtins.exec', 'os.system',
                'numpy.dtypes.ObjectDType', 'builtins.object'):
        assert bad not in names
