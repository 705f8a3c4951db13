"""What the annotation readers produce and the COCO writer consumes: one
:class:`ImageRecord` per image holding its :class:`Box` es, and the error
every converter raises on bad input (:class:`ConversionError`, whose message
names the file and line)."""
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.utils import scandir

__all__ = [
    'ConversionError', 'where', 'Box', 'ImageRecord', 'read_lines',
    'image_size', 'list_images', 'IMAGE_EXTS'
]

from mmretina.geo.formats import IMAGE_EXTS  # noqa: E402  (one list)
from mmretina.geo.raster import RasterError  # noqa: E402
from mmretina.geo.raster import image_size as read_header_size  # noqa: E402


class ConversionError(ValueError):
    """Bad input: the message names the file (and line)."""


def where(path: str, line: Optional[int] = None) -> str:
    """``path:line`` (or ``path`` without a line), for messages."""
    return f'{path}:{line}' if line else path


class Box:
    """One box as a reader found it.

    ``x1, y1, x2, y2`` are continuous pixels of the image (the image spans
    ``[0, W] x [0, H]``), except for YOLO boxes before the image size is
    known: then they are the normalised ``cx, cy, w, h`` of the file and
    ``extra['yolo']`` holds its line. ``src`` and ``line`` say where the box
    was written; ``extra['raw']`` holds the numbers of a VOC file.
    """
    __slots__ = ('x1', 'y1', 'x2', 'y2', 'label', 'src', 'line', 'extra')

    def __init__(self, x1, y1, x2, y2, label, src, line, extra=None):
        self.x1, self.y1, self.x2, self.y2 = x1, y1, x2, y2
        self.label, self.src, self.line = label, src, line
        self.extra = extra or {}


class ImageRecord:
    """One image: path relative to the image root, size (None until known),
    boxes, and where it was named (for error messages)."""

    def __init__(self, file_name: str, src: str, line: Optional[int] = None):
        self.file_name = file_name
        self.src, self.line = src, line
        self.width: Optional[int] = None
        self.height: Optional[int] = None
        self.size_src: Optional[Tuple[str, Optional[int]]] = None
        self.boxes: List[Box] = []


def read_lines(path: str) -> List[Tuple[int, str]]:
    """(1-based line number, stripped text) of the non-empty lines."""
    try:
        with open(path, encoding='utf-8-sig') as f:
            return [(i, s.strip()) for i, s in enumerate(f, 1) if s.strip()]
    except OSError as e:
        raise ConversionError(f'{path}: cannot read ({e.strerror}).') \
            from None


def image_size(path: str, named_at: str) -> Tuple[int, int]:
    """(width, height) from the image's header
    (:func:`mmretina.geo.raster.image_size`: no decoding), or a
    ConversionError naming the label file (``named_at``) that lists it."""
    if not osp.isfile(path):
        raise ConversionError(
            f'{named_at}: image {path!r} does not exist (check --img-dir).')
    try:
        return read_header_size(path)
    except RasterError as e:  # names the image and why
        raise ConversionError(f'{named_at}: {e}') from None


def list_images(img_dir: str) -> List[str]:
    """Image paths under ``img_dir`` (recursive), relative to it, sorted."""
    if not osp.isdir(img_dir):
        raise ConversionError(f'--img-dir {img_dir!r} is not a directory.')
    return sorted(scandir(img_dir, IMAGE_EXTS, recursive=True,
                          case_sensitive=False))
