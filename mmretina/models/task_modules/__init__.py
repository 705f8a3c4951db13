from .assigners import MaxIoUAssigner
from .prior_generators import AnchorGenerator, TorchvisionAnchorGenerator

__all__ = ['AnchorGenerator', 'MaxIoUAssigner', 'TorchvisionAnchorGenerator']
