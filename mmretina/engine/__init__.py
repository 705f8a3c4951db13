"""Training-loop hooks of scope ``mmretina``."""
from .hooks import CheckFiniteLossHook

__all__ = ['CheckFiniteLossHook']
