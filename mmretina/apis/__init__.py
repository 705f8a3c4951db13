"""Inference APIs: tiled inference over large images, result writers,
ONNX export and onnxruntime inference.

Importing this package is cheap: rasterio / geopandas (the ``geo`` extra)
are imported when a raster is read or a GIS layer written, and
``onnx`` / ``onnxruntime`` are imported
only by :func:`export_onnx` and :class:`OrtBackend` when used (the
``deploy`` extra, ``pip install -r requirements/deploy.txt``).
"""
from .inference import (LazyBackend, PytorchBackend, TiledInferencer,
                        load_image, optimize_for_cpu)
from .progress import progress_bar
from .outputs import (CSV_HEADER, VECTOR_FORMATS, detections_frame,
                      draw_detections, write_coco_json, write_csv,
                      write_layer)
from .raster import (Georef, RasterError, RasterSource, detect_raster,
                     read_georef)
from .tiling import (Window, box_iou, cut_mask, drop_cut_boxes, merge_nms,
                     tile_windows, weighted_boxes_fusion)

__all__ = [
    'LazyBackend', 'PytorchBackend', 'TiledInferencer', 'load_image', 'optimize_for_cpu',
    'progress_bar',
    'CSV_HEADER', 'VECTOR_FORMATS', 'detections_frame', 'draw_detections',
    'write_coco_json', 'write_csv', 'write_layer', 'Georef', 'RasterError',
    'RasterSource', 'detect_raster', 'read_georef', 'Window', 'box_iou',
    'cut_mask', 'drop_cut_boxes', 'merge_nms', 'tile_windows',
    'weighted_boxes_fusion', 'export_onnx', 'OrtBackend'
]


def __getattr__(name):
    # lazily: these import torch.onnx / onnxruntime machinery
    if name == 'export_onnx':
        from .onnx_export import export_onnx
        return export_onnx
    if name == 'OrtBackend':
        from .onnx_runtime import OrtBackend
        return OrtBackend
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
