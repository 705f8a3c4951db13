"""Load full mmengine checkpoints under ``torch.load(weights_only=True)``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: only
tensors, plain containers and an allowlist of globals may be unpickled.
mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without
``weights_only``, and the checkpoints its ``Runner`` writes hold more than
tensors, so ``load_from=...``, ``--resume`` and ``tools/test.py CKPT`` fail
with "Weights only load failed ... Unsupported global".

The fix is scoped: :func:`install_checkpoint_loader` (run by ``import
mmretina``) replaces mmengine's loader of local files (the ``''`` scheme of
``CheckpointLoader``, which ``load_from``, ``resume``, ``load_checkpoint`` and
mmdet's ``init_detector`` go through) by one that loads with
``weights_only=True`` *inside* :func:`allow_checkpoint_globals`. Torch's
process-wide allowlist is not touched: any other ``torch.load`` in the
process keeps torch's defaults.

What is allowed, each entry narrowed to what mmengine's checkpoints need
(found by saving checkpoints with a ``Runner`` and loading them):

* ``mmengine.logging.history_buffer.HistoryBuffer`` -- the message hub's
  ``log_scalars``. It is rebuilt as :class:`CheckpointHistoryBuffer`, whose
  ``__setstate__`` accepts only mmengine's three data fields and statistics
  methods that are already registered under their own name. mmengine's
  ``HistoryBuffer.__setstate__`` writes the checkpoint's
  ``statistics_methods`` into the class-level registry, which would let a
  crafted checkpoint change logging for the whole process.
* ``builtins.getattr``, *restricted* (:func:`_history_buffer_getattr`):
  pickle writes the function ``HistoryBuffer.min`` as ``getattr(HistoryBuffer,
  'min')``; only registered statistics methods of ``HistoryBuffer`` are
  returned, the real ``getattr`` is never exposed.
* ``numpy.ndarray``, ``numpy.dtype``, ``numpy._core.multiarray._reconstruct``
  and ``.scalar`` (also under numpy 1.x's ``numpy.core`` path): the history
  arrays and ``runtime_info['eta']``. ``dtype``, ``_reconstruct`` and
  ``scalar`` are stand-ins that build numeric (bool, integer, float,
  complex) dtypes only, so object, string, void and structured dtypes -- and
  with them object arrays -- are refused.
* the numeric dtype classes (``numpy.dtypes.Float64DType``, ...): pickle
  rebuilds a dtype, then sets its state, which torch only allows for
  allowlisted types.

``collections.OrderedDict`` / ``Counter`` (state dicts, ``MultiStepLR``'s
milestones) are allowed by torch already.
"""
import contextlib
import os.path as osp
import pickle
from typing import Iterator, Optional

import numpy as np
import torch

__all__ = [
    'safe_checkpoint_globals', 'allow_checkpoint_globals',
    'load_checkpoint_file', 'install_checkpoint_loader',
    'register_safe_checkpoint_globals', 'CheckpointHistoryBuffer'
]

# numpy dtype codes whose dtypes may be rebuilt: bool, integers, floats and
# complex numbers -- plain numbers, nothing that holds objects.
_NUMERIC_DTYPE_CODES = '?bBhHiIlLqQefdgFDG'

# The fields of a HistoryBuffer's state (HistoryBuffer.__init__).
_HISTORY_BUFFER_FIELDS = {'max_length', '_log_history', '_count_history'}


def _refuse(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(
        f'mmretina: {what} is not allowed while loading a checkpoint with '
        'weights_only=True (mmretina/engine/checkpoint.py lists what is).')


def _history_buffer_class():
    from mmengine.logging.history_buffer import HistoryBuffer
    return HistoryBuffer


# HistoryBuffer's built-in statistics (registered by its __init__, so not
# yet in its registry in a process that has not made one).
_DEFAULT_STATISTICS = ('min', 'max', 'mean', 'current')


def _registered_statistic(name) -> Optional[object]:
    """HistoryBuffer's statistics method ``name`` (a built-in one, or one
    registered in this process under its own name), if any."""
    HistoryBuffer = _history_buffer_class()
    if not isinstance(name, str) or name.startswith('_'):
        return None
    method = HistoryBuffer.__dict__.get(name)
    if not callable(method) or isinstance(method, (classmethod,
                                                   staticmethod)):
        return None
    if name in _DEFAULT_STATISTICS or \
            HistoryBuffer._statistics_methods.get(name) is method:
        return method
    return None


def _history_buffer_getattr(obj, name):
    """Stand-in for ``builtins.getattr`` inside ``weights_only`` unpickling:
    only ``getattr(HistoryBuffer, <registered statistics method>)``."""
    if obj in (_history_buffer_class(), CheckpointHistoryBuffer):
        method = _registered_statistic(name)
        if method is not None:
            return method
    raise _refuse(f'getattr({obj!r}, {name!r})')


def _numeric(dtype) -> np.dtype:
    if not isinstance(dtype, np.dtype) or dtype.char not in \
            _NUMERIC_DTYPE_CODES or dtype.fields is not None \
            or dtype.subdtype is not None:
        raise _refuse(f'numpy dtype {dtype!r} (only numeric dtypes are)')
    return dtype


def _numeric_dtype(obj, align=False, copy=False) -> np.dtype:
    """Stand-in for ``numpy.dtype`` (what pickle calls to rebuild one)."""
    if not isinstance(obj, str):
        raise _refuse(f'numpy.dtype({obj!r})')
    return _numeric(np.dtype(obj, align, copy))


def _multiarray():
    # numpy>=2 moved numpy.core to numpy._core; pickles name the module of
    # the numpy that wrote them.
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy<2
        from numpy.core import multiarray
    return multiarray


def _numeric_reconstruct(subtype, shape, dtype):
    """Stand-in for ``numpy._core.multiarray._reconstruct``: plain ndarrays
    of a numeric dtype."""
    if subtype is not np.ndarray or not isinstance(dtype, (str, bytes)):
        raise _refuse(f'_reconstruct({subtype!r}, {shape!r}, {dtype!r})')
    _numeric(np.dtype(dtype.decode() if isinstance(dtype, bytes) else dtype))
    return _multiarray()._reconstruct(subtype, shape, dtype)


def _numeric_scalar(dtype, *args):
    """Stand-in for ``numpy._core.multiarray.scalar``: numeric scalars."""
    return _multiarray().scalar(_numeric(dtype), *args)


def _make_checkpoint_history_buffer():
    HistoryBuffer = _history_buffer_class()

    class CheckpointHistoryBuffer(HistoryBuffer):
        """A ``HistoryBuffer`` rebuilt from a checkpoint.

        Same data and behaviour; its ``__setstate__`` refuses statistics
        methods other than the ones registered under their own names, and
        never writes the class-level registry. It pickles as mmengine's
        ``HistoryBuffer``, so checkpoints saved after a resume are those
        mmengine writes.
        """

        def __setstate__(self, state) -> None:
            if not isinstance(state, dict):
                raise _refuse(f'HistoryBuffer state of type {type(state)}')
            state = dict(state)
            methods = state.pop('statistics_methods', {})
            if not isinstance(methods, dict):
                raise _refuse('HistoryBuffer statistics_methods of type '
                              f'{type(methods)}')
            for name, method in methods.items():
                if _registered_statistic(name) is not method:
                    raise _refuse(
                        f'a HistoryBuffer state registering the statistic '
                        f'{name!r} -> {method!r}')
            unknown = set(state) - _HISTORY_BUFFER_FIELDS
            if unknown:
                raise _refuse(
                    f'HistoryBuffer state fields {sorted(unknown)}')
            # What mmengine's __setstate__ does, minus writing the
            # checkpoint's methods into the class-level registry.
            self._set_default_statistics()
            self.__dict__.update(state)

        def __reduce_ex__(self, protocol):
            import copyreg
            return (copyreg.__newobj__, (HistoryBuffer, ),
                    self.__getstate__())

    CheckpointHistoryBuffer.__module__ = __name__
    return CheckpointHistoryBuffer


CheckpointHistoryBuffer = _make_checkpoint_history_buffer()


def _numpy_dtype_classes():
    classes = []
    for code in _NUMERIC_DTYPE_CODES:
        try:
            cls = type(np.dtype(code))
        except TypeError:
            continue
        if cls is not np.dtype and cls not in classes:
            classes.append(cls)
    return classes


def safe_checkpoint_globals():
    """The allowlist, in the form ``torch.serialization.safe_globals`` takes
    (objects, or ``(object, 'module.name')`` pairs for stand-ins)."""
    entries = [
        (CheckpointHistoryBuffer,
         'mmengine.logging.history_buffer.HistoryBuffer'),
        (_history_buffer_getattr, 'builtins.getattr'),
        np.ndarray,
        (_numeric_dtype, 'numpy.dtype'),
    ]
    for mod in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries.append((_numeric_reconstruct, f'{mod}._reconstruct'))
        entries.append((_numeric_scalar, f'{mod}.scalar'))
    entries.extend(_numpy_dtype_classes())
    return entries


@contextlib.contextmanager
def allow_checkpoint_globals() -> Iterator[None]:
    """Within the block, ``torch.load(weights_only=True)`` accepts the
    globals of mmengine checkpoints (:func:`safe_checkpoint_globals`)."""
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    if safe_globals is None:  # torch < 2.5: no weights_only default
        yield
        return
    with safe_globals(safe_checkpoint_globals()):
        yield


def load_checkpoint_file(filename: str, map_location=None):
    """``torch.load`` of an mmengine checkpoint, ``weights_only=True``."""
    with allow_checkpoint_globals():
        return torch.load(filename, map_location=map_location,
                          weights_only=True)


def _load_from_local(filename: str, map_location=None):
    """mmengine's ``load_from_local`` with the scoped allowlist."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename}: no such checkpoint file')
    return load_checkpoint_file(filename, map_location)


def install_checkpoint_loader() -> None:
    """Make mmengine load local checkpoints through
    :func:`load_checkpoint_file`. Idempotent; run by ``import mmretina``."""
    from mmengine.runner.checkpoint import CheckpointLoader
    if CheckpointLoader._schemes.get('') is not _load_from_local:
        CheckpointLoader.register_scheme(
            prefixes='', loader=_load_from_local, force=True)


def register_safe_checkpoint_globals() -> None:
    """Kept for callers of earlier versions: installs the scoped loader
    (:func:`install_checkpoint_loader`). Torch's process-wide allowlist is
    no longer changed; use :func:`load_checkpoint_file` for direct loads."""
    install_checkpoint_loader()
