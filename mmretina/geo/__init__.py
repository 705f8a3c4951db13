"""Rasters and GIS layers: raster sources read window by window (at a
chosen ground sample distance), the windows' grid, and the writers of
detections (GIS layers, CSV, COCO results, previews).

Importing this package is cheap: rasterio / geopandas (the ``geo`` extra)
are imported when a raster is read or a layer written
(:func:`~mmretina.geo.formats.require`).
"""
from .formats import IMAGE_EXTS, require
from .raster import (ArraySource, Georef, PreviewCanvas, RasterError,
                     RasterSource, gsd_metres, read_georef, scale_boxes)
from .windows import Window, tile_windows
from .writers import (CSV_HEADER, ROTATED_CSV_HEADER, VECTOR_FORMATS,
                      box_outlines, detections_frame, draw_detections,
                      write_coco_json, write_csv, write_layer)

__all__ = [
    'IMAGE_EXTS', 'require', 'ArraySource', 'Georef', 'PreviewCanvas',
    'RasterError', 'RasterSource', 'gsd_metres', 'read_georef',
    'scale_boxes', 'Window', 'tile_windows', 'CSV_HEADER',
    'ROTATED_CSV_HEADER', 'VECTOR_FORMATS', 'box_outlines',
    'detections_frame', 'draw_detections', 'write_coco_json', 'write_csv',
    'write_layer'
]
