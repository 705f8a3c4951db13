"""Datasets and transforms of scope ``mmretina`` (see ``coco.py``)."""
from .coco import CocoDataset
from .transforms import LoadImageFromFile

__all__ = ['CocoDataset', 'LoadImageFromFile']
