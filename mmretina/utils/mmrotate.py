"""The optional ``rotated`` extra: mmrotate-dev 1.0.1 (mmrotate 1.x
packaged), whose box types, coders, DOTA dataset and metric the
oriented-box features use, imported through the one guard
(:func:`mmretina.utils.extras.require`) and registered here.

mmrotate-dev imports torchvision in one module only
(``mmrotate/models/detectors/h2rbox_v2.py``: ``from torchvision import
transforms``). Where torchvision does not import (a CPU torch beside a CUDA
torchvision, or none), :func:`require_mmrotate` imports mmrotate's models
with a placeholder under that one name for the duration of the import: the
placeholder is removed from ``sys.modules`` afterwards, and using H2RBox-v2
(the only user) raises an ImportError that says why.
"""
import importlib
import sys
import types
from types import ModuleType

from .extras import require

__all__ = ['require_mmrotate', 'uses_mmrotate', 'require_for_config']


class _MissingTorchvision(types.ModuleType):
    """Stands in for torchvision while mmrotate's models are imported."""

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ImportError(
            f'torchvision.{name}: torchvision does not import in this '
            'environment; mmrotate uses it only for H2RBox-v2, which '
            'mmretina does not need. Install a torchvision built for this '
            'torch to use H2RBox-v2.')


def _torchvision_imports() -> bool:
    loaded = sys.modules.get('torchvision')
    if loaded is not None:
        return not isinstance(loaded, _MissingTorchvision)
    try:
        importlib.import_module('torchvision')
        return True
    except Exception:  # ImportError, or a CUDA / CPU build mismatch
        for name in [n for n in sys.modules if n.startswith('torchvision')]:
            del sys.modules[name]
        return False


def require_mmrotate(feature: str = 'oriented boxes',
                     models: bool = True) -> ModuleType:
    """Import mmrotate (and, with ``models``, register its models, task
    modules, datasets and metrics), or raise an ImportError naming
    ``feature`` and how to install the ``rotated`` extra.

    Returns:
        module: ``mmrotate``.
    """
    mmrotate, _ = require(feature, 'mmrotate', 'mmrotate.structures',
                          extra='rotated')
    if models and 'mmrotate.models' not in sys.modules:
        stand_in = None
        if not _torchvision_imports():
            stand_in = _MissingTorchvision('torchvision')
            stand_in.transforms = _MissingTorchvision('torchvision.transforms')
            sys.modules['torchvision'] = stand_in
            sys.modules['torchvision.transforms'] = stand_in.transforms
        try:
            for name in ('mmrotate.models', 'mmrotate.datasets',
                         'mmrotate.evaluation', 'mmrotate.visualization'):
                importlib.import_module(name)
        finally:
            if stand_in is not None:
                for name in ('torchvision', 'torchvision.transforms'):
                    if isinstance(sys.modules.get(name), _MissingTorchvision):
                        del sys.modules[name]
    return mmrotate


def uses_mmrotate(node) -> bool:
    """Whether a config (or part of one, a dict / list) names mmrotate's
    scope: a ``default_scope`` or ``_scope_`` of 'mmrotate', or a ``type``
    written 'mmrotate.X'."""
    if hasattr(node, 'to_dict'):  # mmengine Config
        node = node.to_dict()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ('default_scope', '_scope_') and value == 'mmrotate':
                return True
            if (key == 'type' and isinstance(value, str)
                    and value.startswith('mmrotate.')):
                return True
            if uses_mmrotate(value):
                return True
    elif isinstance(node, (list, tuple)):
        return any(uses_mmrotate(v) for v in node)
    return False


def require_for_config(cfg) -> bool:
    """Register mmrotate's models, datasets and metrics before a model or
    Runner is built from an oriented-box config (mmrotate-dev's own, or one
    on its bases): mmengine would import ``mmrotate.models`` itself from
    the scope, which fails where torchvision does not import. Other configs
    are left alone. The one check every command runs (train, test, predict,
    evaluate, export).

    Returns:
        bool: whether the config needed mmrotate.

    Raises:
        ImportError: the config needs mmrotate, which is not installed
            (the message names the config and the extra).
    """
    if not uses_mmrotate(cfg):
        return False
    name = getattr(cfg, 'filename', None) or 'the config'
    require_mmrotate(f'{name} (mmrotate scope: oriented boxes)')
    return True
