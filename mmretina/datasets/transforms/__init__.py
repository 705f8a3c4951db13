from .blur import RandomGaussianBlur
from .image_stats import MatchImageStats
from .loading import LoadImageFromFile
from .torchvision_resize import TorchvisionResize

__all__ = [
    'LoadImageFromFile', 'MatchImageStats', 'RandomGaussianBlur',
    'TorchvisionResize'
]
