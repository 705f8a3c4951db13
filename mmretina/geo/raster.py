"""Rasters read from disk window by window with rasterio (GDAL).

rasterio is the one reader of rasters and of their georeferencing here:
GeoTIFF, Cloud-Optimized GeoTIFF, BigTIFF, JPEG 2000, VRT, and PNG / JPEG
through the same path. A raster is never decoded whole: its windows
(:func:`~mmretina.geo.windows.tile_windows`; the tiled-detection loop,
:mod:`mmretina.inference.tiled`, runs them)
are read by a background thread into a bounded queue, ``batch_size``
windows at a time, so that peak memory follows the batch, not the raster.

Pixels the model sees (the rule training data must follow too):

* **Bands**: ``bands`` (1-based raster band indices, default ``(1, 2, 3)``,
  ``(1, 1, 1)`` for a one-band raster) are read as R, G, B and handed to the
  backend as H x W x 3 uint8 **BGR**, exactly what ``mmcv.imread`` gives for
  a PNG of the same pixels; the config's ``data_preprocessor``
  (``bgr_to_rgb``, ``mean``, ``std``) then applies as in training.
* **Scaling** to uint8, per band b with range ``(lo_b, hi_b)``:
  ``round(clip((v - lo_b) / (hi_b - lo_b), 0, 1) * 255)``.

  - uint8 rasters are not scaled (unless ranges are given);
  - explicit ranges: ``scale=[(lo, hi)]`` (all bands) or one pair per band
    (``--scale LO,HI ...``, or ``scale`` in the config);
  - otherwise (uint16, int16, float, ...) a per-band percentile stretch,
    ``lo_b, hi_b`` = the 2nd and 98th percentiles of the band's valid
    (not nodata) pixels in a decimated sample of the whole raster (at most
    1024 px a side, read through the raster's overviews when it has some).
    The sample does not depend on the windows or on the process reading
    them: every rank of a distributed run computes the same ranges.
* **Nodata** (the bands' nodata value or the raster's mask): a pixel is
  nodata where every band read is nodata (GDAL's dataset mask rule: one
  band at its nodata value is a valid pixel). A window whose pixels are all
  nodata is skipped; nodata pixels of other windows are 0 after scaling; a
  detection whose box centre lies on nodata is dropped.
"""
import os
import queue
import threading
import warnings
from typing import (Iterator, List, NamedTuple, Optional, Sequence, Tuple,
                    Union)

import numpy as np

from mmretina.geo.formats import require
from mmretina.geo.windows import Window
from mmretina.utils.extras import INSTALL

__all__ = [
    'RasterError', 'Georef', 'RasterSource', 'read_georef', 'read_size',
    'image_size', 'percentile_ranges', 'scale_to_uint8', 'parse_scale',
    'parse_bands', 'parse_gsd', 'gsd_metres', 'crs_name', 'crs_groups',
    'drop_nodata_centres', 'scale_boxes', 'ArraySource', 'Source',
    'PreviewCanvas'
]

DEFAULT_PERCENTILES = (2.0, 98.0)
SAMPLE_SIDE = 1024
# GDAL's block cache defaults to 5% of the RAM (1.2 GB of a 24 GB machine,
# 6 GB of a 128 GB one), all of it filled on a large raster. Windows are read
# row by row, so what pays is the rows of blocks one row of windows spans,
# plus one: RasterSource.cache_bytes sizes the cache to the raster's internal
# tiling while its windows are read (unless GDAL_CACHEMAX is set in the
# environment); mmretina.geo.formats.GDAL_CACHEMAX_MB bounds whatever else
# GDAL reads (samples, overviews, georeferencing).
MIN_CACHE_BYTES = 32 * 2**20
_USER_CACHEMAX = 'GDAL_CACHEMAX' in os.environ

ScaleSpec = Union[None, str, Sequence[Sequence[float]]]
# A raster whose pixel is within this fraction of the model's GSD is read
# as it is: a 2% scale change is far inside the scale range RetinaNet's
# anchors cover (2^(1/3) = 26% between octave scales), and resampling
# would only blur it.
GSD_TOLERANCE = 0.02
# A raster coarser than the model by more than this is refused rather than
# enlarged: 10 m satellite pixels read at a 0.1 m tree model's GSD would be
# 100 x 100 times the windows (time without bound) for objects the raster
# cannot show.
MAX_ENLARGEMENT = 8.0


class RasterError(ValueError):
    """A raster that cannot be used as asked; the message is one line that
    names the file and says what to change."""


class Georef(NamedTuple):
    """Georeferencing of a raster.

    ``transform`` (a, b, c, d, e, f) maps continuous pixel coordinates
    (col, row), (0, 0) being the top-left corner of the top-left pixel (the
    convention of detection boxes), to map coordinates:
    ``X = a * col + b * row + c``, ``Y = d * col + e * row + f``.
    ``crs_wkt`` is the CRS as WKT (None: the raster has a transform but no
    CRS).
    """
    transform: Tuple[float, float, float, float, float, float]
    crs_wkt: Optional[str]

    def apply(self, cols: np.ndarray, rows: np.ndarray):
        """Pixel (col, row) -> map (X, Y); arrays of any shape."""
        a, b, c, d, e, f = self.transform
        return a * cols + b * rows + c, d * cols + e * rows + f

    def to_pixels(self, xs: np.ndarray, ys: np.ndarray):
        """Map (X, Y) -> continuous pixel (col, row): :meth:`apply`
        inverted; arrays of any shape."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        x, y = np.asarray(xs) - c, np.asarray(ys) - f
        return (e * x - b * y) / det, (-d * x + a * y) / det

    @property
    def gsd(self) -> float:
        """Ground sample distance: the side of a pixel in map units
        (geometric mean of the two axes)."""
        a, b, c, d, e, f = self.transform
        return float(np.sqrt(abs(a * e - b * d)))


def crs_name(crs) -> str:
    """A CRS as messages name it: ``EPSG:32617``, its name when it has no
    EPSG code, or ``no CRS``.

    Args:
        crs (str | pyproj.CRS | None): WKT (:attr:`Georef.crs_wkt`) or a
            pyproj CRS (a GeoDataFrame's ``crs``); None or '': no CRS.
    """
    if crs is None or (isinstance(crs, str) and not crs):
        return 'no CRS'
    from pyproj import CRS
    crs = CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    return f'EPSG:{epsg}' if epsg else crs.name


def crs_groups(wkts: Sequence[Optional[str]]
               ) -> List[Tuple[Optional[str], List[int]]]:
    """Positions of ``wkts`` grouped by CRS, however each WKT is written.

    Two rasters in one CRS often carry different WKT text (an EPSG code
    written by one program, a PROJ string or another WKT flavour by
    another); pyproj's equivalence decides, not the text.

    Args:
        wkts (list[str | None]): WKT strings (:attr:`Georef.crs_wkt`);
            None or '' for no CRS, a group of its own.

    Returns:
        list[(str | None, list[int])]: per CRS, its first WKT and the
        positions that hold it, in order of first appearance.
    """
    groups: List[Tuple[Optional[str], List[int]]] = []
    parsed = {}

    def crs(wkt):
        if wkt not in parsed:
            from pyproj import CRS
            parsed[wkt] = CRS.from_user_input(wkt)
        return parsed[wkt]

    for i, wkt in enumerate(wkts):
        wkt = wkt or None
        for first, positions in groups:
            if first == wkt or (first is not None and wkt is not None
                                and crs(first) == crs(wkt)):
                positions.append(i)
                break
        else:
            groups.append((wkt, [i]))
    return groups


def parse_gsd(value: Union[None, str, float]) -> Union[str, float]:
    """``--gsd`` -> ``'auto'`` (the model's GSD), ``'off'`` (every raster
    read at its own pixel size) or a GSD in metres (> 0)."""
    if value is None:
        return 'auto'
    given = value
    if isinstance(value, str):
        if value.strip().lower() in ('auto', 'off'):
            return value.strip().lower()
        try:
            value = float(value)
        except ValueError:
            value = -1.0
    if not value > 0:
        raise RasterError(f'--gsd {given!r}: give auto (the model\'s '
                          'ground sample distance), off (rasters read at '
                          'their own pixel size) or metres, e.g. 0.1')
    return float(value)


def gsd_metres(transform: Sequence[float], crs) -> Optional[float]:
    """The side of a pixel in metres (geometric mean of the two axes), or
    None when the raster has no CRS (its units are unknown).

    Args:
        transform: the affine (a, b, c, d, e, f) of pixel (col, row) to map
            coordinates (:class:`Georef`).
        crs (rasterio.crs.CRS, optional): the raster's CRS. Projected: its
            linear unit's factor to metres (US feet: 0.3048006); geographic
            (degrees): the WGS 84 ellipsoid's metres per degree at the
            latitude of the transform's origin.
    """
    if crs is None:
        return None
    a, b, c, d, e, f = transform
    area = abs(a * e - b * d)  # map units^2 per pixel
    if crs.is_geographic:
        lat = np.radians(np.clip(f, -89.9, 89.9))
        per_deg_lat = (111132.92 - 559.82 * np.cos(2 * lat) +
                       1.175 * np.cos(4 * lat))
        per_deg_lon = 111412.84 * np.cos(lat) - 93.5 * np.cos(3 * lat)
        return float(np.sqrt(area * per_deg_lat * per_deg_lon))
    try:
        factor = crs.linear_units_factor[1]
    except Exception:  # a CRS without a linear unit: assume metres
        factor = 1.0
    return float(np.sqrt(area) * factor)


def _open(path: str):
    rasterio = require('reading rasters')
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    if not os.path.isfile(path):
        raise RasterError(f'{path}: no such file')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as e:
        raise RasterError(
            f'{path}: not a raster GDAL can read ({_one_line(e)}); give a '
            'GeoTIFF, COG, JPEG 2000, VRT, PNG or JPEG') from None


def _one_line(e: Exception) -> str:
    return ' '.join(str(e).split())[:300]


def _georef(ds) -> Optional[Georef]:
    from rasterio.transform import Affine
    t = ds.transform
    if ds.crs is None and (t == Affine.identity() or ds.gcps[0]):
        return None
    return Georef((t.a, t.b, t.c, t.d, t.e, t.f),
                  ds.crs.to_wkt() if ds.crs is not None else None)


def read_georef(path: str) -> Optional[Georef]:
    """The georeferencing of the raster at ``path`` (rasterio: geotransform
    and CRS, whatever GDAL reads: GeoKeys, world files, .aux.xml, WKT CRS),
    or None when it has none (a plain PNG / JPEG / TIFF)."""
    with _open(path) as ds:
        return _georef(ds)


def read_size(path: str) -> Tuple[int, int]:
    """(width, height) of a raster, from its header."""
    with _open(path) as ds:
        return ds.width, ds.height


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) of an image or raster from its header, without
    decoding the pixels: PIL for the common formats (at any size: its
    decompression-bomb limit guards decoding, and nothing is decoded
    here), GDAL (rasterio) for what PIL cannot read (BigTIFF, float TIFFs,
    JPEG 2000, VRT).

    The one header reader of the package: a file's declared size is what
    callers bound memory and time with before anything is decoded.

    Raises:
        RasterError: no such file, or neither PIL nor GDAL reads its header
            (the message names the file once, with both readers' reasons).
    """
    if not os.path.isfile(path):
        raise RasterError(f'{path}: no such file')
    try:
        return _pil_size(path)
    except Exception as e:  # PIL raises several types for unreadable files
        pil = _reason(e, path)
    try:
        rasterio = require('reading image headers')
    except ImportError:
        raise RasterError(f'{path}: not an image PIL can read ({pil}); '
                          f'other rasters need rasterio: {INSTALL["geo"]}'
                          ) from None
    from rasterio.errors import NotGeoreferencedWarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                return ds.width, ds.height
    except Exception as e:
        raise RasterError(f'{path}: neither PIL ({pil}) nor GDAL '
                          f'({_reason(e, path)}) reads it: the file is '
                          'damaged or not an image') from None


def _reason(e: Exception, path: str) -> str:
    """A reader's error on one line, without the path (said once)."""
    text = _one_line(e).replace(f"'{path}'", '').replace(path, '')
    return ' '.join(text.split()).strip(' :') or type(e).__name__


_PIL_LIMIT_LOCK = threading.Lock()


def _pil_size(path: str) -> Tuple[int, int]:
    """PIL's header size, its decompression-bomb check off for the length
    of the (lazy, non-decoding) ``Image.open`` only."""
    from PIL import Image
    with _PIL_LIMIT_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                return im.size
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def parse_bands(bands: Union[None, str, Sequence[int]]
                ) -> Optional[Tuple[int, ...]]:
    """``'4,3,2'`` / ``[4, 3, 2]`` -> ``(4, 3, 2)`` (1-based, three of
    them); None stays None (the default, resolved per raster)."""
    if bands is None:
        return None
    if isinstance(bands, str):
        try:
            bands = [int(b) for b in bands.split(',')]
        except ValueError:
            raise RasterError(f'--bands {bands!r}: give three 1-based band '
                              'numbers, e.g. --bands 1,2,3') from None
    bands = tuple(int(b) for b in bands)
    if len(bands) != 3 or min(bands) < 1:
        raise RasterError(f'bands {bands}: give three 1-based band numbers '
                          '(read as R, G, B), e.g. 1,2,3')
    return bands


def parse_scale(scale: ScaleSpec) -> ScaleSpec:
    """``--scale`` / config ``scale`` -> None (default rule), the string
    ``'pLO,pHI'`` kept as percentiles ``('percentile', lo, hi)``, or a list
    of (lo, hi) ranges. Accepts ``['0,3000']``, ``['0,3000', '0,2800',
    ...]``, ``[[0, 3000], ...]``, ``'p1,p99'``."""
    if scale is None:
        return None
    if isinstance(scale, str):
        scale = [scale]
    if len(scale) == 1 and isinstance(scale[0], str) \
            and scale[0].startswith('p'):
        try:
            lo, hi = (float(v.strip().lstrip('p'))
                      for v in scale[0].split(','))
        except ValueError:
            lo = hi = -1
        if not 0 <= lo < hi <= 100:
            raise RasterError(f'--scale {scale[0]!r}: percentiles are '
                              'pLO,pHI with 0 <= LO < HI <= 100, e.g. p2,p98')
        return ('percentile', lo, hi)
    ranges = []
    for s in scale:
        try:
            lo, hi = ([float(v) for v in s.split(',')]
                      if isinstance(s, str) else [float(v) for v in s])
        except (ValueError, TypeError):
            raise RasterError(f'scale {s!r}: give LO,HI (e.g. 0,3000)'
                              ) from None
        if not hi > lo:
            raise RasterError(f'scale {s!r}: HI must be > LO')
        ranges.append((lo, hi))
    return ranges


def scale_to_uint8(arr: np.ndarray, ranges: Optional[np.ndarray]
                   ) -> np.ndarray:
    """Band values to uint8 by the module's scaling rule.

    Args:
        arr (ndarray): B x H x W, any dtype.
        ranges (ndarray, optional): B x 2, (lo, hi) per band; None: the
            values are uint8 already.

    Returns:
        ndarray: B x H x W uint8.
    """
    if ranges is None:
        return arr.astype(np.uint8, copy=False)
    lo = ranges[:, 0].reshape(-1, 1, 1).astype(np.float32)
    span = (ranges[:, 1] - ranges[:, 0]).reshape(-1, 1, 1).astype(np.float32)
    out = (arr.astype(np.float32) - lo) / span
    np.clip(out, 0, 1, out=out)
    out *= 255
    return np.rint(out, out=out).astype(np.uint8)


def percentile_ranges(ds, bands: Sequence[int],
                      percentiles=DEFAULT_PERCENTILES,
                      sample_side: int = SAMPLE_SIDE) -> np.ndarray:
    """Per-band (lo, hi) percentiles of the valid pixels of a decimated
    sample (at most ``sample_side`` px a side, nearest neighbour, through
    overviews when the raster has them) of the whole raster.

    Returns:
        ndarray: len(bands) x 2 float64.
    """
    from rasterio.enums import Resampling
    f = max(1.0, max(ds.width, ds.height) / sample_side)
    shape = (len(bands), max(1, int(ds.height / f)),
             max(1, int(ds.width / f)))
    arr = ds.read(list(bands), out_shape=shape, masked=True,
                  resampling=Resampling.nearest)
    ranges = np.zeros((len(bands), 2))
    for i in range(len(bands)):
        valid = arr[i].compressed().astype(np.float64)
        valid = valid[np.isfinite(valid)]
        if valid.size == 0:
            ranges[i] = (0.0, 1.0)
            continue
        lo, hi = np.percentile(valid, percentiles)
        ranges[i] = (lo, hi if hi > lo else lo + 1.0)
    return ranges


def drop_nodata_centres(bboxes: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Keep-mask of the boxes whose centre pixel is valid.

    Args:
        bboxes (ndarray): M x 4 (x1, y1, x2, y2), or rotated M x 5 (cx, cy,
            w, h, angle), in the window's pixels.
        valid (ndarray): H x W bool, the window's valid (not nodata) pixels.

    Returns:
        ndarray: (M,) bool.
    """
    h, w = valid.shape
    b = np.asarray(bboxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros(0, bool)
    if b.shape[-1] == 5:
        centres = b[:, :2]
    else:
        b = b.reshape(-1, 4)
        centres = (b[:, :2] + b[:, 2:]) / 2
    cx = np.clip(np.floor(centres[:, 0]), 0, w - 1).astype(int)
    cy = np.clip(np.floor(centres[:, 1]), 0, h - 1).astype(int)
    return valid[cy, cx]


def scale_boxes(bboxes, fx: float, fy: float):
    """Boxes in one pixel grid -> a grid ``fx`` x ``fy`` times coarser
    (x' = fx x, y' = fy y: model px -> raster px, raster px -> preview px).

    Args:
        bboxes (ndarray | Tensor): M x 4 (x1, y1, x2, y2), or rotated M x 5
            (cx, cy, w, h, angle).

    Returns:
        the same type and shape. A rotated box keeps its angle; its centre
        is scaled by (fx, fy) and its sides by sqrt(fx fy). That is exact
        when fx == fy (a preview; a raster read at another GSD, whose fx
        and fy differ only by the rounding of the grid's size to whole px,
        below 1 / grid side: a corner moves by less than w x |fx - fy| / 2).
    """
    if bboxes.shape[-1] == 5:
        s = float(np.sqrt(fx * fy))
        f = [fx, fy, s, s, 1.0]
    else:
        f = [fx, fy, fx, fy]
    if isinstance(bboxes, np.ndarray):
        return bboxes * np.asarray(f, dtype=bboxes.dtype)
    return bboxes * bboxes.new_tensor(f)


class _Batch(NamedTuple):
    ids: List[int]  # window indices read (not entirely nodata)
    imgs: List[np.ndarray]  # h x w x 3 uint8 BGR
    valid: List[Optional[np.ndarray]]  # h x w bool, None: all valid
    covered: List[int]  # every window index this batch accounts for,
    # those left out as nodata included (for records and progress)


_DONE = object()


class RasterSource:
    """One raster, its bands and scaling resolved, read window by window.

    Args:
        path (str): a raster GDAL reads.
        bands (tuple[int], optional): 1-based bands read as R, G, B; default
            (1, 2, 3), or (1, 1, 1) for a one-band raster.
        scale: None (the module's default rule), ``('percentile', lo,
            hi)`` or a list of (lo, hi) ranges, one or one per band
            (:func:`parse_scale`).
        gsd (float, optional): the ground sample distance, in metres, the
            windows are read at (the model's). A raster with a CRS whose
            pixel differs from it by more than ``GSD_TOLERANCE`` is read
            resampled (GDAL ``average`` when reducing, ``bilinear`` when
            enlarging); None, or a raster without CRS: its own pixels.

    Attributes:
        width, height (int): the grid the windows are cut from, in **model
            px** (the raster's pixels unless resampled).
        native_width, native_height (int): the raster's size in its px.
        fx, fy (float): raster px per model px along x and y (1.0 when not
            resampled); :meth:`to_native` maps boxes back.
        native_gsd (float, optional): the raster's pixel in metres (None
            without CRS); ``gsd``: the one read (None: its own).

    Raises:
        RasterError: not a raster, band out of range, wrong number of
            ranges.
    """

    def __init__(self, path: str, bands: Optional[Sequence[int]] = None,
                 scale: ScaleSpec = None,
                 gsd: Optional[float] = None) -> None:
        self.path = path
        scale = parse_scale(scale)
        with _open(path) as ds:
            self.native_width, self.native_height = ds.width, ds.height
            self.count = ds.count
            self.native_gsd = gsd_metres(tuple(ds.transform)[:6], ds.crs) \
                if _georef(ds) is not None else None
            self._set_grid(gsd)
            if bands is None:
                bands = (1, 2, 3) if ds.count >= 3 else (1, 1, 1)
            self.bands = parse_bands(bands)
            bad = [b for b in self.bands if b > ds.count]
            if bad:
                raise RasterError(
                    f'{path}: band {bad[0]} is out of range (the raster has '
                    f'{ds.count} band(s)); choose --bands among '
                    f'1..{ds.count}')
            self.dtype = np.dtype(ds.dtypes[self.bands[0] - 1])
            self.georef = _georef(ds)
            self.block_shapes = ds.block_shapes
            self.itemsize = max(np.dtype(t).itemsize for t in ds.dtypes)
            from rasterio.enums import MaskFlags
            self.has_nodata = any(
                MaskFlags.all_valid not in ds.mask_flag_enums[b - 1]
                for b in self.bands)
            try:
                if isinstance(scale, tuple):
                    self.ranges = percentile_ranges(ds, self.bands, scale[1:])
                elif scale is not None:
                    if len(scale) not in (1, 3):
                        raise RasterError(
                            f'{path}: {len(scale)} scale ranges for 3 bands; '
                            'give one LO,HI for all bands or one per band')
                    self.ranges = np.array(scale * (3 if len(scale) == 1
                                                    else 1), dtype=float)
                elif all(np.dtype(ds.dtypes[b - 1]) == np.uint8
                         for b in self.bands):
                    self.ranges = None
                else:
                    self.ranges = percentile_ranges(ds, self.bands)
            except Exception as e:
                if isinstance(e, RasterError):
                    raise
                raise RasterError(f'{path}: cannot read a sample of the '
                                  f'raster ({_one_line(e)}): the file is '
                                  'truncated or corrupt') from None

    def _set_grid(self, gsd: Optional[float]) -> None:
        """The model-px grid: the raster's own, or resampled to ``gsd``."""
        self.gsd, self.fx, self.fy = None, 1.0, 1.0
        self.width, self.height = self.native_width, self.native_height
        if gsd is None or self.native_gsd is None:
            return
        factor = gsd / self.native_gsd  # raster px per model px
        if abs(factor - 1) <= GSD_TOLERANCE:
            return
        if factor < 1 / MAX_ENLARGEMENT:
            raise RasterError(
                f'{self.path}: its {self.native_gsd:.4g} m pixels would be '
                f'enlarged {1 / factor:.0f}x to be read at {gsd:.4g} m (the '
                'model\'s ground sample distance): the raster is far coarser '
                'than the imagery the model learned; use a model for this '
                'resolution, or --gsd off to read it as it is')
        self.gsd = float(gsd)
        self.width = max(1, int(round(self.native_width / factor)))
        self.height = max(1, int(round(self.native_height / factor)))
        # exact per axis: the grid covers the raster edge to edge
        self.fx = self.native_width / self.width
        self.fy = self.native_height / self.height

    @property
    def resampled(self) -> bool:
        """Whether windows are read resampled to another GSD."""
        return self.gsd is not None

    @property
    def resampling(self) -> Optional[str]:
        """GDAL's resampling of the windows: ``'average'`` (area-weighted,
        no aliasing) when reducing a finer raster, ``'bilinear'`` when
        enlarging a coarser one; None when not resampled."""
        if not self.resampled:
            return None
        return 'average' if self.fx * self.fy > 1 else 'bilinear'

    def resampling_note(self, action: str = "read at the model's"
                        ) -> Optional[str]:
        """The one line that says a raster is read at another GSD, e.g.
        ``'ortho.tif: 0.025 m pixels read at the model's 0.1 m (1600x1600
        px, GDAL average)'`` (``action``: ``'cut into chips at'``, ...); None
        when the raster is read at its own pixels."""
        if not self.resampled:
            return None
        return (f'{self.path}: {self.native_gsd:.4g} m pixels {action} '
                f'{self.gsd:.4g} m ({self.width}x{self.height} px, GDAL '
                f'{self.resampling})')

    @property
    def shape(self) -> Tuple[int, int]:
        """(height, width) in model px."""
        return self.height, self.width

    def native_bounds(self, win: Window) -> Tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of window ``win`` (model px) in raster px."""
        return (win.x0 * self.fx, win.y0 * self.fy, win.x1 * self.fx,
                win.y1 * self.fy)

    def to_native(self, bboxes: np.ndarray) -> np.ndarray:
        """Boxes in model px of the whole grid -> raster px.

        Args:
            bboxes (ndarray | Tensor): M x 4 (x1, y1, x2, y2), or rotated
                M x 5 (cx, cy, w, h, angle).

        Returns:
            the same type and shape, scaled by (fx, fy)
            (:func:`scale_boxes`); the input itself when not resampled.
        """
        if not self.resampled:
            return bboxes
        return scale_boxes(bboxes, self.fx, self.fy)

    def _read(self, ds, win: Window) -> Tuple[np.ndarray,
                                                Optional[np.ndarray]]:
        from rasterio.enums import Resampling
        from rasterio.windows import Window as RioWindow
        kw = {}
        if self.resampled:
            # a fractional window of the raster read into the window's
            # model px (GDAL reads fractional windows exactly)
            x0, y0, x1, y1 = self.native_bounds(win)
            rw = RioWindow(x0, y0, x1 - x0, y1 - y0)
            kw = dict(out_shape=(len(self.bands), win.height, win.width),
                      resampling=Resampling[self.resampling])
        else:
            rw = RioWindow(win.x0, win.y0, win.width, win.height)
        try:
            arr = ds.read(list(self.bands), window=rw, **kw)
            valid = None
            if self.has_nodata:
                # GDAL's dataset-mask rule: nodata where every band read
                # is nodata (a uint8 RGB raster declaring nodata=255, as
                # the DeepForest wheel's OSBS_029.tif does, keeps its
                # pixels that are white in one or two bands)
                if kw:
                    kw['resampling'] = Resampling.nearest
                valid = (ds.read_masks(list(self.bands), window=rw, **kw)
                         > 0).any(axis=0)
        except Exception as e:
            raise RasterError(
                f'{self.path}: cannot read window x={win.x0}..{win.x1}, '
                f'y={win.y0}..{win.y1} ({_one_line(e)}): the file is '
                'truncated or corrupt') from None
        img = scale_to_uint8(arr, self.ranges)
        if valid is not None:
            img[:, ~valid] = 0
        # R, G, B bands -> H x W x 3 BGR, as mmcv.imread returns a PNG
        return np.ascontiguousarray(img[::-1].transpose(1, 2, 0)), valid

    def cache_bytes(self, window_height: int) -> int:
        """GDAL block cache that decodes each block of the raster once when
        windows ``window_height`` px high are read row by row: the rows of
        blocks one row of windows spans, plus one (all bands of the blocks,
        as GDAL caches them), at least ``MIN_CACHE_BYTES``.

        Measured (AMD EPYC, 1 thread; 40,000 px wide 3-band uint8 deflate
        GeoTIFF, 512 px blocks, 400 px windows at stride 300, 31 rows of
        windows): GDAL's default cache 8.6 s and 1.2 GB resident; this
        cache (2 + 1 rows of blocks, 184 MB) 5.3 s and 227 MB; a 30 MB
        cache 14.8 s (every block decoded several times).
        """
        block_h, block_w = self.block_shapes[0]
        window_height = int(np.ceil(window_height * self.fy))  # raster px
        rows = -(-max(1, window_height - 1) // block_h) + 2
        width = -(-self.native_width // block_w) * block_w
        per_row = width * block_h * self.count * self.itemsize
        return max(MIN_CACHE_BYTES, rows * per_row)

    def read(self, win: Window) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """One window: (h x w x 3 uint8 BGR, h x w bool valid mask or None
        when the raster has no nodata)."""
        with _open(self.path) as ds:
            return self._read(ds, win)

    def overview(self, max_side: int = 4096) -> Tuple[np.ndarray, float]:
        """The whole raster decimated to at most ``max_side`` px a side
        (nearest neighbour, through overviews when it has some), scaled
        and ordered as the windows are: (h x w x 3 uint8 BGR, the factor
        f, raster px = f x overview px; 1.0 when not decimated)."""
        from rasterio.enums import Resampling
        f = max(1.0, max(self.native_width, self.native_height) / max_side)
        shape = (3, max(1, round(self.native_height / f)),
                 max(1, round(self.native_width / f)))
        with _open(self.path) as ds:
            try:
                arr = ds.read(list(self.bands), out_shape=shape,
                              resampling=Resampling.nearest)
            except Exception as e:
                raise RasterError(f'{self.path}: cannot read the raster '
                                  f'({_one_line(e)}): the file is truncated '
                                  'or corrupt') from None
        img = scale_to_uint8(arr, self.ranges)
        return np.ascontiguousarray(img[::-1].transpose(1, 2, 0)), \
            self.native_width / shape[2]

    def batches(self, windows: Sequence[Window], ids: Sequence[int],
                batch_size: int = 4, prefetch: int = 2) -> Iterator[_Batch]:
        """Batches of the windows ``ids`` (indices into ``windows``), read
        by a background thread at most ``prefetch`` batches ahead; windows
        entirely nodata are left out of ``ids`` / ``imgs`` but counted in
        ``covered`` (a batch may then be shorter, or empty)."""
        q: 'queue.Queue' = queue.Queue(maxsize=max(1, prefetch))
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        env = {}
        if not _USER_CACHEMAX and ids:
            env['GDAL_CACHEMAX'] = self.cache_bytes(
                max(windows[i].height for i in ids))

        def work() -> None:
            rasterio = require('reading rasters')
            try:
                with rasterio.Env(**env), _open(self.path) as ds:
                    batch = _Batch([], [], [], [])
                    for i in ids:
                        img, valid = self._read(ds, windows[i])
                        batch.covered.append(i)
                        if valid is not None and not valid.any():
                            continue
                        if valid is not None and valid.all():
                            valid = None
                        batch.ids.append(i)
                        batch.imgs.append(img)
                        batch.valid.append(valid)
                        if len(batch.ids) == batch_size:
                            if not put(batch):
                                return
                            batch = _Batch([], [], [], [])
                    if batch.covered and not put(batch):
                        return
                put(_DONE)
            except BaseException as e:  # handed to the consumer
                put(e)

        thread = threading.Thread(target=work, daemon=True,
                                  name='mmretina-raster-reader')
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()


class PreviewCanvas:
    """The raster decimated to at most ``max_side`` px a side, filled from
    the windows as they are read (no second pass over the raster: on a
    40,000 px deflate GeoTIFF without overviews, reading the decimated
    raster again took 35 s). Same size and factor as
    :meth:`RasterSource.overview`; windows left out as nodata stay 0.

    Attributes:
        img (ndarray): h x w x 3 uint8 BGR.
        factor (float): raster px = factor x preview px.
    """

    def __init__(self, width: int, height: int, max_side: int = 4096):
        f = max(1.0, max(width, height) / max_side)
        h, w = max(1, round(height / f)), max(1, round(width / f))
        self.img = np.zeros((h, w, 3), np.uint8)
        self.factor = width / w
        self._fy = height / h

    def paste(self, bounds: Sequence[float], img: np.ndarray) -> None:
        """Draw a window's pixels (h x w x 3 BGR) at its place, ``bounds``
        (x0, y0, x1, y1) in raster px."""
        import cv2
        x0, x1 = (int(round(v / self.factor)) for v in bounds[0::2])
        y0, y1 = (int(round(v / self._fy)) for v in bounds[1::2])
        if x1 > x0 and y1 > y0:
            self.img[y0:y1, x0:x1] = cv2.resize(
                img, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)


class ArraySource:
    """An image in memory, read window by window with
    :class:`RasterSource`'s interface, so that one loop
    (:func:`detect_windows`) runs every tiled detection.

    Args:
        img (ndarray): H x W x 3 uint8 BGR.
        path (str, optional): where it was read from (for messages).
    """
    gsd = None
    fx = fy = 1.0
    resampled = False
    georef = None

    def __init__(self, img: np.ndarray, path: Optional[str] = None) -> None:
        self.img, self.path = img, path
        self.height, self.width = img.shape[:2]
        self.native_width, self.native_height = self.width, self.height

    def native_bounds(self, win: Window) -> Tuple[float, float, float, float]:
        return (win.x0, win.y0, win.x1, win.y1)

    def to_native(self, bboxes):
        return bboxes

    def overview(self, max_side: int = 4096) -> Tuple[np.ndarray, float]:
        """The image itself and factor 1 (it is in memory already)."""
        return self.img, 1.0

    def batches(self, windows: Sequence[Window], ids: Sequence[int],
                batch_size: int = 4, prefetch: int = 0) -> Iterator[_Batch]:
        ids = list(ids)
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            yield _Batch(chunk, [
                np.ascontiguousarray(
                    self.img[windows[i].y0:windows[i].y1,
                             windows[i].x0:windows[i].x1]) for i in chunk
            ], [None] * len(chunk), chunk)


Source = Union[RasterSource, ArraySource]
