"""Annotation converters: one reader per format (:mod:`.voc`, :mod:`.csv`,
:mod:`.yolo`, DOTA's :mod:`.dota`), one COCO writer (:mod:`.coco_writer`),
the VOC / CSV / YOLO to COCO conversion (:mod:`.convert`), the DeepForest
data set (:mod:`.deepforest`), DOTA's patches (:mod:`.dota_split`) and the
oriented demo set in DOTA's layout (:mod:`.oriented_demo`).
Boxes are checked with the one validity rule,
:mod:`mmretina.structures.box_validity`."""
from .coco_writer import CocoWriter, to_coco_dict, write_json
from .convert import convert_to_coco
from .csv import load_csv, parse_csv
from .dota import (DotaLabels, read_dota_labels, read_task1,
                   write_dota_labels, write_task1)
from .dota_split import merge_patch_results, split_dota
from .oriented_demo import make_oriented_demo
from .records import Box, ConversionError, ImageRecord
from .voc import load_voc, parse_voc, parse_voc_file
from .yolo import load_yolo, load_yolo_names

__all__ = [
    'CocoWriter', 'to_coco_dict', 'write_json', 'convert_to_coco',
    'load_csv', 'parse_csv', 'DotaLabels', 'read_dota_labels', 'read_task1',
    'write_dota_labels', 'write_task1', 'merge_patch_results', 'split_dota',
    'Box', 'ConversionError', 'ImageRecord', 'load_voc', 'parse_voc',
    'parse_voc_file', 'load_yolo', 'load_yolo_names'
]
