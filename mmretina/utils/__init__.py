from .checkpoint import (register_safe_checkpoint_globals,
                         safe_checkpoint_globals)
from .dist import setup_cpu_distributed
from .registry import MMRetinaRegistry
from .resume import CorruptCheckpointError, check_checkpoint, check_resume

__all__ = [
    'register_safe_checkpoint_globals', 'safe_checkpoint_globals',
    'setup_cpu_distributed', 'MMRetinaRegistry', 'CorruptCheckpointError',
    'check_checkpoint', 'check_resume'
]
