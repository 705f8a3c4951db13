"""Evaluation the field reports: box precision / recall at IoU 0.4 per
image, raster and site, beside COCO mAP (:mod:`.field`)."""
from .field import (IOU_THR, ImageMatches, class_recall, coco_map,
                    draw_matches, field_summary, format_table, match_boxes,
                    match_image, precision_recall, write_matches_csv,
                    write_summary)

__all__ = [
    'IOU_THR', 'ImageMatches', 'class_recall', 'coco_map', 'draw_matches',
    'field_summary', 'format_table', 'match_boxes', 'match_image',
    'precision_recall', 'write_matches_csv', 'write_summary'
]
