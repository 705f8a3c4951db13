"""What the readers open and what the geo features need: the one list of
image / raster file extensions, and the ``geo`` extra (rasterio,
geopandas, pyogrio, shapely, pyproj; wheels, GDAL and PROJ inside) through
the one guard of the optional dependencies,
:func:`mmretina.utils.extras.require`."""
import os
from types import ModuleType
from typing import Tuple, Union

from mmretina.utils.extras import require as require_extra

__all__ = ['IMAGE_EXTS', 'has_image_ext', 'require']

# Images and rasters, by extension: what OpenCV (mmcv) decodes (PNG, JPEG,
# BMP, TIFF, WebP) and what GDAL reads besides (JPEG 2000, VRT, ERDAS IMG).
IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp',
              '.jp2', '.vrt', '.img')
# GDAL's block cache bound (MB) for whatever GDAL reads outside the
# windowed path (see mmretina.geo.raster.RasterSource.cache_bytes)
GDAL_CACHEMAX_MB = 256


def has_image_ext(name: str) -> bool:
    """Whether ``name`` ends with one of :data:`IMAGE_EXTS` (any case)."""
    return name.lower().endswith(IMAGE_EXTS)


def require(feature: str,
            *modules: str) -> Union[ModuleType, Tuple[ModuleType, ...]]:
    """Import ``modules`` (default: rasterio) of the geo extra for
    ``feature`` (:func:`mmretina.utils.extras.require`), GDAL's block cache
    bounded first. Returns the module (one) or a tuple of them."""
    os.environ.setdefault('GDAL_CACHEMAX', str(GDAL_CACHEMAX_MB))
    return require_extra(feature, *(modules or ('rasterio', )), extra='geo')
