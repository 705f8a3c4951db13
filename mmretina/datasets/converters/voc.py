"""The Pascal-VOC XML reader (one XML per image).

VOC files are untrusted input: they are parsed with ``defusedxml``, which
refuses DTDs, entity declarations and external references (a 1 KB file of
nested entities, the "billion laughs", would otherwise expand to gigabytes),
and files larger than :data:`MAX_XML_BYTES` are refused before parsing.

Coordinates: VOC's are 1-based pixel indices, inclusive (``xmin=1`` is the
first column, ``xmax=W`` the last); with ``one_based`` (the default)
``xmin - 1, ymin - 1`` are taken and ``xmax, ymax`` kept, so ``(1, 1, W, H)``
is the whole image in continuous pixels (detectron2 does the same; mmdet's
``VOCDataset`` subtracts 1 from all four). ``one_based=False`` keeps the
numbers (files of tools that write 0-based coordinates, e.g. DeepForest's).
"""
import os.path as osp
import xml.sax
from typing import List, Optional

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.sax import parseString
from mmengine.utils import scandir

from .records import Box, ConversionError, ImageRecord, where

__all__ = ['MAX_XML_BYTES', 'parse_xml_with_lines', 'parse_voc',
           'parse_voc_file', 'load_voc']

# A VOC annotation is a few KB; anything this large is not one.
MAX_XML_BYTES = 16 * 1024 * 1024


class _TreeBuilder(xml.sax.ContentHandler):
    """Nested dicts ``{'tag', 'text', 'line', 'children'}`` that keep each
    element's line (ElementTree drops it; the messages need it)."""

    def __init__(self):
        super().__init__()
        self.root = dict(tag=None, text='', line=0, children=[])
        self.stack = [self.root]
        self.locator = None

    def setDocumentLocator(self, locator):
        self.locator = locator

    def startElement(self, name, attrs):
        node = dict(tag=name, text='', line=self.locator.getLineNumber(),
                    children=[])
        self.stack[-1]['children'].append(node)
        self.stack.append(node)

    def endElement(self, name):
        self.stack.pop()

    def characters(self, content):
        self.stack[-1]['text'] += content


def parse_xml_with_lines(data: bytes, path: str) -> dict:
    """Parse XML ``data`` (read from ``path``, named in messages) into the
    root element's nested dict. DTDs, entities and external references are
    refused (:class:`ConversionError` naming ``path``)."""
    if len(data) > MAX_XML_BYTES:
        raise ConversionError(
            f'{path}: refused: {len(data)} bytes, more than the '
            f'{MAX_XML_BYTES} an annotation XML may have.')
    handler = _TreeBuilder()
    try:
        parseString(data, handler, forbid_dtd=True, forbid_entities=True,
                    forbid_external=True)
    except DefusedXmlException as e:
        raise ConversionError(
            f'{path}: refused: the XML declares a DTD, an entity or an '
            f'external reference ({type(e).__name__}: {e}). Annotation '
            'files need none of these and they can expand without bound '
            '("billion laughs"): remove the <!DOCTYPE ...> / <!ENTITY ...> '
            'declarations.') from None
    except xml.sax.SAXParseException as e:
        raise ConversionError(
            f'{where(path, e.getLineNumber())}: not well-formed XML '
            f'({e.getMessage()}).') from None
    if not handler.root['children']:
        raise ConversionError(f'{path}: empty XML file.')
    return handler.root['children'][0]


def _child(node: dict, tag: str) -> Optional[dict]:
    for c in node['children']:
        if c['tag'] == tag:
            return c
    return None


def _number(node: Optional[dict], tag: str, path: str, parent: dict) -> float:
    c = _child(node, tag) if node is not None else None
    if c is None:
        raise ConversionError(
            f'{where(path, parent["line"])}: <{parent["tag"]}> has no '
            f'<{tag}>.')
    try:
        value = float(c['text'].strip())
    except ValueError:
        raise ConversionError(
            f'{where(path, c["line"])}: <{tag}> is {c["text"].strip()!r}, '
            'not a number.') from None
    if not np.isfinite(value):
        raise ConversionError(
            f'{where(path, c["line"])}: <{tag}> is {value}.')
    return value


def parse_voc(data: bytes,
              path: str,
              one_based: bool = True,
              skip_difficult: bool = False,
              need_size: bool = True) -> ImageRecord:
    """One Pascal-VOC XML document -> :class:`ImageRecord`.

    Args:
        data (bytes): the XML.
        path (str): where it was read from (named in messages).
        one_based (bool): VOC's 1-based inclusive coordinates (see the
            module docstring); False takes the numbers as they are.
        skip_difficult (bool): drop ``<difficult>1</difficult>`` objects.
        need_size (bool): require ``<size>`` and ``<filename>``; without,
            the record's size is None (to be read from the image) and its
            file name is ``path``'s stem.

    Returns:
        ImageRecord: boxes in continuous 0-based pixels of the image.
    """
    root = parse_xml_with_lines(data, path)
    if root['tag'] != 'annotation':
        raise ConversionError(
            f'{where(path, root["line"])}: root element is <{root["tag"]}>, '
            'expected <annotation> (Pascal VOC).')
    fn = _child(root, 'filename')
    if fn is not None and fn['text'].strip():
        rec = ImageRecord(fn['text'].strip(), path, fn['line'])
    elif need_size:
        raise ConversionError(
            f'{where(path, root["line"])}: <annotation> has no <filename>.')
    else:
        rec = ImageRecord(osp.splitext(osp.basename(path))[0], path,
                          root['line'])
    size = _child(root, 'size')
    if size is None and need_size:
        raise ConversionError(
            f'{where(path, root["line"])}: <annotation> has no <size> '
            '(<width>, <height>): add it, or convert the boxes to a CSV and '
            'use the csv converter (which reads sizes from the images).')
    if size is not None:
        rec.width = int(_number(size, 'width', path, size))
        rec.height = int(_number(size, 'height', path, size))
        if rec.width <= 0 or rec.height <= 0:
            raise ConversionError(
                f'{where(path, size["line"])}: <size> is {rec.width}x'
                f'{rec.height} (width x height); it must be positive.')
        rec.size_src = (path, size['line'])
    off = 1.0 if one_based else 0.0
    for obj in root['children']:
        if obj['tag'] != 'object':
            continue
        name = _child(obj, 'name')
        if name is None or not name['text'].strip():
            raise ConversionError(
                f'{where(path, obj["line"])}: <object> has no <name>.')
        diff = _child(obj, 'difficult')
        difficult = diff is not None and diff['text'].strip() in ('1', 'true')
        if difficult and skip_difficult:
            continue
        bb = _child(obj, 'bndbox')
        if bb is None:
            raise ConversionError(
                f'{where(path, obj["line"])}: <object> has no <bndbox>.')
        x1, y1, x2, y2 = (_number(bb, k, path, bb)
                          for k in ('xmin', 'ymin', 'xmax', 'ymax'))
        rec.boxes.append(Box(
            x1 - off, y1 - off, x2, y2, name['text'].strip(), path,
            bb['line'], extra=dict(raw=(x1, y1, x2, y2))))
    return rec


def parse_voc_file(path: str, one_based: bool = True,
                   skip_difficult: bool = False) -> ImageRecord:
    """:func:`parse_voc` of the file ``path``; the file is not read past
    :data:`MAX_XML_BYTES`."""
    try:
        with open(path, 'rb') as f:
            data = f.read(MAX_XML_BYTES + 1)
    except OSError as e:
        raise ConversionError(f'{path}: cannot read ({e.strerror}).') \
            from None
    return parse_voc(data, path, one_based, skip_difficult)


def load_voc(ann_dir: str, one_based: bool = True,
             skip_difficult: bool = False) -> List[ImageRecord]:
    """Every ``.xml`` under ``ann_dir`` (recursive, sorted) as records."""
    if not osp.isdir(ann_dir):
        raise ConversionError(f'--ann-dir {ann_dir!r} is not a directory.')
    xmls = sorted(osp.join(ann_dir, f) for f in scandir(
        ann_dir, '.xml', recursive=True, case_sensitive=False))
    if not xmls:
        raise ConversionError(f'--ann-dir {ann_dir!r} holds no .xml file.')
    return [parse_voc_file(p, one_based, skip_difficult) for p in xmls]
