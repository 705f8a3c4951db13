"""Load full mmengine checkpoints under ``torch.load(weights_only=True)``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: only
tensors, plain containers and an allowlist of globals may be unpickled.
mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without
``weights_only``, and the checkpoints its ``Runner`` writes hold more than
tensors, so ``load_from=...``, ``--resume`` and ``tools/test.py CKPT`` fail
with "Weights only load failed ... Unsupported global".

:func:`register_safe_checkpoint_globals` adds exactly what mmengine's own
checkpoints need to torch's allowlist (``torch.serialization
.add_safe_globals``); ``weights_only`` stays on, so a checkpoint holding any
other pickled object (an arbitrary class, ``os.system``, ...) is still
refused. The entries were found empirically, by saving a checkpoint with a
``Runner`` and loading it with ``weights_only=True`` until it passed:

* ``mmengine.logging.history_buffer.HistoryBuffer``: the message hub's
  ``log_scalars`` hold one per logged scalar (loss, lr, time, ...).
* ``builtins.getattr``, *restricted* (:func:`_history_buffer_getattr`):
  ``HistoryBuffer.__getstate__`` stores its statistics methods, and pickle
  writes the function ``HistoryBuffer.min`` as ``getattr(HistoryBuffer,
  'min')``. Only that form (HistoryBuffer's statistics methods) is accepted;
  the real ``getattr`` is never exposed.
* ``numpy.ndarray`` and ``numpy._core.multiarray._reconstruct``: the
  ``_log_history`` / ``_count_history`` arrays of each ``HistoryBuffer``.
* ``numpy._core.multiarray.scalar``: ``message_hub.runtime_info['eta']`` is
  a ``numpy.float64``.
* ``numpy.dtype`` and the numeric dtype classes (``numpy.dtypes
  .Float64DType``, ``Int64DType``, ``BoolDType``, ...): the dtype of those
  arrays and scalars (pickle rebuilds a dtype, then sets its state, which
  torch only allows for allowlisted types). Object, string, void and
  datetime dtypes are *not* allowed, so object arrays stay refused.

The numpy functions are also registered under their numpy 1.x path
(``numpy.core.multiarray.*``) so checkpoints written with numpy<2 load with
numpy>=2 and vice versa. ``collections.OrderedDict`` / ``Counter`` (state
dicts, ``MultiStepLR.milestones``) are allowed by torch already.
"""
import pickle

import numpy as np
import torch

__all__ = ['register_safe_checkpoint_globals', 'safe_checkpoint_globals']

# Default statistics of HistoryBuffer (mmengine.logging.history_buffer);
# methods added with ``HistoryBuffer.register_statistics`` are accepted too.
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'mean', 'current')

# numpy dtype codes whose dtype instances may be rebuilt: bool, integers,
# floats and complex numbers -- plain numbers, nothing that holds objects.
_NUMERIC_DTYPE_CODES = '?bBhHiIlLqQefdgFDG'


def _history_buffer_getattr(obj, name):
    """Stand-in for ``builtins.getattr`` inside ``weights_only`` unpickling.

    Python pickles the function ``HistoryBuffer.min`` (a qualified name)
    as ``getattr(HistoryBuffer, 'min')``. Allowing the real ``getattr``
    would let a checkpoint fetch any attribute of any object it can build;
    this only returns statistics methods of ``HistoryBuffer``.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and isinstance(name, str) \
            and not name.startswith('_'):
        attr = HistoryBuffer.__dict__.get(name)
        if attr is not None and (
                name in _HISTORY_BUFFER_STATISTICS
                or HistoryBuffer._statistics_methods.get(name) is attr):
            return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'mmretina: getattr({obj!r}, {name!r}) is not allowed while '
        'loading a checkpoint with weights_only=True (only '
        'HistoryBuffer statistics methods are).')


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
    """The allowlist, in the form ``torch.serialization.add_safe_globals`` /
    ``torch.serialization.safe_globals`` take (objects, or ``(object,
    'module.name')`` pairs for names other than the object's own)."""
    from mmengine.logging.history_buffer import HistoryBuffer

    # numpy>=2 moved numpy.core to numpy._core; pickles name the module of
    # the numpy that wrote them.
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy<2
        from numpy.core import multiarray
    reconstruct = multiarray._reconstruct
    scalar = multiarray.scalar

    entries = [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
    ]
    for mod in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries.append((reconstruct, f'{mod}._reconstruct'))
        entries.append((scalar, f'{mod}.scalar'))
    entries.extend(_numpy_dtype_classes())
    return entries


def register_safe_checkpoint_globals():
    """Allowlist the globals of mmengine checkpoints for ``torch.load``
    with ``weights_only=True`` (torch>=2.6's default). Idempotent.

    Does nothing on a torch without ``add_safe_globals`` (< 2.4, which
    loads with ``weights_only=False`` by default anyway).
    """
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:
        return
    add_safe_globals(safe_checkpoint_globals())
