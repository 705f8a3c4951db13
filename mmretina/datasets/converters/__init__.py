"""Annotation converters: one reader per format (:mod:`.voc`, :mod:`.csv`,
:mod:`.yolo`), one COCO writer (:mod:`.coco_writer`), the VOC / CSV / YOLO
to COCO conversion (:mod:`.convert`) and the DeepForest data set
(:mod:`.deepforest`). Boxes are checked with the one validity rule,
:mod:`mmretina.structures.box_validity`."""
from .coco_writer import CocoWriter, to_coco_dict, write_json
from .convert import convert_to_coco
from .csv import load_csv, parse_csv
from .records import Box, ConversionError, ImageRecord
from .voc import load_voc, parse_voc, parse_voc_file
from .yolo import load_yolo, load_yolo_names

__all__ = [
    'CocoWriter', 'to_coco_dict', 'write_json', 'convert_to_coco',
    'load_csv', 'parse_csv', 'Box', 'ConversionError', 'ImageRecord',
    'load_voc', 'parse_voc', 'parse_voc_file', 'load_yolo', 'load_yolo_names'
]
