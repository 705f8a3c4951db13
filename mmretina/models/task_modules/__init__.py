from .assigners import MaxIoUAssigner, RBboxOverlaps2D
from .prior_generators import (AnchorGenerator, FakeRotatedAnchorGenerator,
                               TorchvisionAnchorGenerator)

__all__ = [
    'AnchorGenerator', 'FakeRotatedAnchorGenerator', 'MaxIoUAssigner',
    'RBboxOverlaps2D', 'TorchvisionAnchorGenerator'
]
