"""Small helpers: CPU description (:mod:`.cpu_info`), the training-time
estimate (:mod:`.train_estimate`), CPU distributed set-up (:mod:`.dist`) and
the registry that checks init arguments (:mod:`.checked_registry`).

Checkpoint loading and the resume checks live in :mod:`mmretina.engine`
(``engine.checkpoint``, ``engine.resume``); their names are still importable
from here, resolved on first use (``mmretina.registry`` imports this package
before ``mmretina.engine`` can be imported)."""
import importlib

from .checked_registry import MMRetinaRegistry
from .dist import setup_cpu_distributed

_MOVED = {
    'register_safe_checkpoint_globals': 'mmretina.engine.checkpoint',
    'safe_checkpoint_globals': 'mmretina.engine.checkpoint',
    'allow_checkpoint_globals': 'mmretina.engine.checkpoint',
    'install_checkpoint_loader': 'mmretina.engine.checkpoint',
    'load_checkpoint_file': 'mmretina.engine.checkpoint',
    'CorruptCheckpointError': 'mmretina.engine.resume',
    'check_checkpoint': 'mmretina.engine.resume',
    'check_resume': 'mmretina.engine.resume',
}

__all__ = ['setup_cpu_distributed', 'MMRetinaRegistry', *_MOVED]


def __getattr__(name: str):
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
