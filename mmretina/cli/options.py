"""The flags the commands share, each defined once with one default.

``mmretina predict`` (``tools/infer.py``, ``tools/dist_infer.sh``),
``mmretina evaluate`` (``eval_field.py``) and ``mmretina test --tile``
(``tools/test.py``) take the same window, raster and device flags from
here, so that one command line means the same detections under each.

* ``--tile auto`` (default): the model's window (the config's ``tile``,
  else the shorter side of its test ``Resize`` scale); a raster larger than
  it is read window by window, a smaller one as one window. ``0``: every
  input as one window (shrunk to the model's input by its pipeline). ``N``:
  N px windows.
* ``--gsd auto`` (default): rasters with a CRS read at the model's ground
  sample distance (the config's ``gsd``, in metres; a model without one
  reads every raster as it is, with one line saying so); ``off``: at their
  own; a number: at that many metres.
"""
import argparse
from typing import Optional, Union

__all__ = [
    'SCORE_THR', 'TILE', 'OVERLAP', 'BATCH', 'add_window_args',
    'add_raster_args', 'add_device_arg', 'parse_gsd_flag',
    'add_score_thr_arg', 'default_device', 'model_window', 'model_gsd',
    'resolve_tile', 'resolve_gsd'
]

SCORE_THR = 0.3  # detections drawn, written and counted for precision
TILE = 'auto'
OVERLAP = 0.25
BATCH = 4
WHOLE = 1 << 30  # a window larger than any raster: one window per input
DEFAULT_WINDOW = 800  # mmdet's COCO test scale's shorter side


def _tile(value: str) -> Union[str, int]:
    if value == 'auto':
        return value
    try:
        tile = int(value)
    except ValueError:
        tile = -1
    if tile < 0:
        raise argparse.ArgumentTypeError(
            f'{value!r}: give auto (the model\'s window), 0 (each input as '
            'one window) or a window side in px, e.g. 400')
    return tile


def parse_gsd_flag(value: str) -> Union[str, float]:
    """argparse type of ``--gsd``: auto, off or metres."""
    from mmretina.geo.raster import RasterError, parse_gsd
    try:
        return parse_gsd(value)
    except RasterError as e:
        raise argparse.ArgumentTypeError(str(e).split(': ', 1)[1]) from None


def add_window_args(parser: argparse.ArgumentParser,
                    merge: bool = True) -> None:
    """``--tile``, ``--overlap``, ``--batch`` (alias ``--tile-batch``) and,
    with ``merge``, ``--merge``, ``--merge-iou``, ``--border``."""
    parser.add_argument(
        '--tile', type=_tile, default=TILE,
        help='window side in px: auto (default: the model\'s window; '
        'larger rasters are read window by window), 0 (each input as one '
        'window) or N')
    parser.add_argument(
        '--overlap', type=float, default=OVERLAP,
        help='window overlap: fraction of --tile (< 1) or px (default '
        '%(default)s)')
    parser.add_argument(
        '--batch', '--tile-batch', dest='batch', type=int, default=BATCH,
        help='windows per forward pass (default %(default)s)')
    if merge:
        parser.add_argument(
            '--merge', choices=['nms', 'wbf'], default='nms',
            help='merge across windows: class-aware NMS or weighted box '
            'fusion')
        parser.add_argument(
            '--merge-iou', type=float, default=None,
            help='IoU of the merge (default: the model\'s NMS IoU; 0.55 for '
            'wbf)')
        parser.add_argument(
            '--border', type=float, default=2.0,
            help='px: a box this close to an inner window edge is cut '
            '(default %(default)s)')


def add_raster_args(parser: argparse.ArgumentParser) -> None:
    """``--bands``, ``--scale``, ``--gsd``."""
    parser.add_argument(
        '--bands',
        help='rasters: three 1-based bands read as R, G, B (default 1,2,3, '
        'or 1,1,1 for a one-band raster; '
        'the config\'s `bands` if it has one)')
    parser.add_argument(
        '--scale', nargs='+',
        help='rasters: to uint8 by LO,HI (all bands) or one LO,HI per band, '
        'or pLO,pHI percentiles of a sample (default: uint8 as is, others '
        'p2,p98; the config\'s `scale` if it has one)')
    parser.add_argument(
        '--gsd', type=parse_gsd_flag, default='auto',
        help='ground sample distance rasters are read at: auto (default: '
        'the model\'s, the config\'s `gsd`), off (each raster\'s own) or '
        'metres, e.g. 0.1')


def default_device() -> str:
    """cuda:0 when a GPU is there, else cpu: every command's default."""
    import torch
    return 'cuda:0' if torch.cuda.is_available() else 'cpu'


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--device', default=None,
        help='PyTorch device (default: cuda:0 if available, else cpu)')


def add_score_thr_arg(parser: argparse.ArgumentParser,
                      what: str = 'draw and write') -> None:
    parser.add_argument(
        '--score-thr', type=float, default=SCORE_THR,
        help=f'{what} detections with at least this score (default '
        '%(default)s)')


def model_window(cfg) -> int:
    """The model's window in px: the config's ``tile``, else the shorter
    side of its test pipeline's ``Resize`` scale (``min_size`` of
    ``TorchvisionResize``), else 800."""
    if cfg is None:
        return DEFAULT_WINDOW
    if cfg.get('tile'):
        return int(cfg['tile'])
    pipeline = (cfg.get('test_pipeline') or
                (cfg.get('test_dataloader') or {}).get('dataset', {}).get(
                    'pipeline') or [])
    for t in pipeline:
        if not hasattr(t, 'get') or 'Resize' not in str(t.get('type', '')):
            continue
        scale = t.get('scale') or t.get('min_size')  # TorchvisionResize
        if scale:
            return int(scale) if isinstance(scale, (int, float)) \
                else int(min(scale))
    return DEFAULT_WINDOW


def model_gsd(cfg) -> Optional[float]:
    """The model's ground sample distance in metres (the config's
    ``gsd``), or None."""
    gsd = cfg.get('gsd') if cfg is not None else None
    return float(gsd) if gsd else None


def resolve_tile(tile: Union[str, int], window: int) -> int:
    """``--tile`` -> window px for :class:`TiledInferencer`; ``WHOLE`` for
    0 (one window per input)."""
    if tile == 'auto':
        return int(window)
    return int(tile) if int(tile) > 0 else WHOLE


def resolve_gsd(gsd: Union[str, float], model: Optional[float],
                log=print) -> Optional[float]:
    """``--gsd`` -> the GSD rasters are read at (None: their own)."""
    if gsd == 'off':
        return None
    if gsd == 'auto':
        if model is None:
            log('the model states no ground sample distance (the config '
                'key gsd, in metres): rasters are read at their own pixel '
                'size (--gsd M to choose one)')
        return model
    return float(gsd)
