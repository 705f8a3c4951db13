"""COCO's label spaces: torchvision's 91 indices and mmdet's 80 classes.

torchvision's COCO detectors classify the COCO category id itself (1-90),
plus index 0 (``__background__``); ten ids of the 2014 paper's list were
never annotated ('N/A' in torchvision's ``_COCO_CATEGORIES``): 12, 26, 29,
30, 45, 66, 68, 69, 71, 83. mmdet's ``CocoDataset`` numbers the 80 annotated
categories 0-79 in id order.
"""
from typing import List

__all__ = ['COCO80_IDS', 'COCO91_UNUSED', 'coco91_class_names']

COCO91_UNUSED = (0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
# torchvision index (= COCO category id) of mmdet's class j
COCO80_IDS = tuple(i for i in range(91) if i not in COCO91_UNUSED)


def coco91_class_names() -> List[str]:
    """torchvision's 91 names: mmdet's COCO names at their ids,
    '__background__' at 0 and 'N/A' at the unused ids."""
    from mmdet.datasets import CocoDataset
    names80 = CocoDataset.METAINFO['classes']
    names = ['N/A'] * 91
    names[0] = '__background__'
    for j, cid in enumerate(COCO80_IDS):
        names[cid] = names80[j]
    return names
