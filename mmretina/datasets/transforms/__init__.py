from .blur import RandomGaussianBlur
from .image_stats import MatchImageStats
from .loading import LoadImageFromFile

__all__ = ['LoadImageFromFile', 'MatchImageStats', 'RandomGaussianBlur']
