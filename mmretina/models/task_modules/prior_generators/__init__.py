from .anchor_generator import AnchorGenerator
from .torchvision_anchor_generator import (TorchvisionAnchorGenerator,
                                           torchvision_anchor_sizes)

__all__ = [
    'AnchorGenerator', 'TorchvisionAnchorGenerator', 'torchvision_anchor_sizes'
]
