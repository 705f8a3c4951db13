from .checkpoint import (allow_checkpoint_globals, install_checkpoint_loader,
                         load_checkpoint_file,
                         register_safe_checkpoint_globals,
                         safe_checkpoint_globals)
from .dist import setup_cpu_distributed
from .registry import MMRetinaRegistry
from .resume import CorruptCheckpointError, check_checkpoint, check_resume

__all__ = [
    'register_safe_checkpoint_globals', 'safe_checkpoint_globals',
    'allow_checkpoint_globals', 'install_checkpoint_loader',
    'load_checkpoint_file',
    'setup_cpu_distributed', 'MMRetinaRegistry', 'CorruptCheckpointError',
    'check_checkpoint', 'check_resume'
]
