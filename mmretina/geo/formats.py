"""What the readers open and what the geo features need: the one list of
image / raster file extensions and the one guard of the optional
dependencies (the ``geo`` extra: rasterio, geopandas, pyogrio, shapely,
pyproj; wheels, GDAL and PROJ inside)."""
import importlib
import os
from types import ModuleType
from typing import Tuple

__all__ = ['IMAGE_EXTS', 'GEO_INSTALL_HINT', 'has_image_ext', 'require']

# Images and rasters, by extension: what OpenCV (mmcv) decodes (PNG, JPEG,
# BMP, TIFF, WebP) and what GDAL reads besides (JPEG 2000, VRT, ERDAS IMG).
IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp',
              '.jp2', '.vrt', '.img')
GEO_INSTALL_HINT = ('pip install -r requirements/geo.txt (or bash '
                    'tools/install.sh)')
# GDAL's block cache bound (MB) for whatever GDAL reads outside the
# windowed path (see mmretina.geo.raster.RasterSource.cache_bytes)
GDAL_CACHEMAX_MB = 256


def has_image_ext(name: str) -> bool:
    """Whether ``name`` ends with one of :data:`IMAGE_EXTS` (any case)."""
    return name.lower().endswith(IMAGE_EXTS)


def require(feature: str, *modules: str) -> Tuple[ModuleType, ...]:
    """Import ``modules`` (default: rasterio) for ``feature``, or raise an
    ImportError naming the feature, the missing module and how to install
    the geo extra. Returns the module (one) or a tuple of them."""
    os.environ.setdefault('GDAL_CACHEMAX', str(GDAL_CACHEMAX_MB))
    out = []
    for name in modules or ('rasterio', ):
        try:
            out.append(importlib.import_module(name))
        except ImportError as e:
            raise ImportError(f'{feature} needs {name} (the geo extra): '
                              f'{GEO_INSTALL_HINT}') from e
    return out[0] if len(out) == 1 else tuple(out)
