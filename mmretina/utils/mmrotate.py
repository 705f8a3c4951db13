"""The one guard of the optional ``rotated`` extra: mmrotate-dev 1.0.1
(mmrotate 1.x packaged), whose box types, coders, DOTA dataset and metric
the oriented-box features use.

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

__all__ = ['ROTATED_INSTALL_HINT', 'require_mmrotate']

ROTATED_INSTALL_HINT = ('pip install -r requirements/rotated.txt '
                        '(mmrotate-dev 1.0.1; or bash tools/install.sh)')


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
    if 'torchvision' in sys.modules:
        return not isinstance(sys.modules['torchvision'], _MissingTorchvision)
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
    try:
        mmrotate = importlib.import_module('mmrotate')
        importlib.import_module('mmrotate.structures')
    except ImportError as e:
        raise ImportError(f'{feature} needs mmrotate (the rotated extra): '
                          f'{ROTATED_INSTALL_HINT}') from e
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
