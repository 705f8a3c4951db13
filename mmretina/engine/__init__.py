"""Training-loop hooks and optimizer wrappers of scope ``mmretina``."""
from .hooks import CheckFiniteLossHook
from .optimizers import BF16OptimWrapper

__all__ = ['CheckFiniteLossHook', 'BF16OptimWrapper']
