from .checkpoint import (register_safe_checkpoint_globals,
                         safe_checkpoint_globals)
from .dist import setup_cpu_distributed

__all__ = [
    'register_safe_checkpoint_globals', 'safe_checkpoint_globals',
    'setup_cpu_distributed'
]
