from .anchor_generator import AnchorGenerator
from .rotated_anchor_generator import FakeRotatedAnchorGenerator
from .torchvision_anchor_generator import (TorchvisionAnchorGenerator,
                                           torchvision_anchor_sizes)

__all__ = [
    'AnchorGenerator', 'FakeRotatedAnchorGenerator',
    'TorchvisionAnchorGenerator', 'torchvision_anchor_sizes'
]
