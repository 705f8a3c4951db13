"""``LoadImageFromFile`` whose failures name the image and say what is
wrong with it.

mmcv's transform fails on a missing file with the backend's bare error, on a
0-byte file with OpenCV's ``(-215:Assertion failed) !buf.empty()``, and on a
file OpenCV cannot decode with ``AssertionError: failed to load image`` (or,
under ``python -O``, an ``AttributeError`` on ``None``). Here the first is a
``FileNotFoundError`` and the others an ``OSError`` naming the path, the
image id and the fix. An image whose decoded size differs from the
``width`` / ``height`` of its annotation is logged (its boxes were checked
against that size).

``cache_bytes`` keeps decoded images in memory (per process, i.e. per
dataloader worker), so that a small dataset trained for many epochs decodes
each file once: PNG decoding is about half of the DeepForest demo's data
pipeline (docs/user_guides/speed.md).
"""
import logging
import os
import os.path as osp
from collections import OrderedDict
from typing import Optional

import cv2
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmengine.logging import print_log

from ...registry import TRANSFORMS

__all__ = ['LoadImageFromFile']


def _is_read_or_decode_error(err: Exception) -> bool:
    """Whether ``err`` says the file could not be read or decoded.

    I/O errors (missing file, permission, a backend's ``OSError``, PIL's
    ``UnidentifiedImageError``), OpenCV's decoder errors (``cv2.error``,
    e.g. ``!buf.empty()`` for a 0-byte file) and mmcv's "failed to load
    image" assertion for a file OpenCV decodes to ``None`` (under
    ``python -O`` that image fails later, as an ``AttributeError`` on
    ``None``).
    """
    if isinstance(err, (OSError, cv2.error)):
        return True
    if isinstance(err, AssertionError):
        return 'failed to load image' in str(err)
    if isinstance(err, AttributeError):
        return "'NoneType'" in str(err)
    return False


class DecodedImageCache:
    """Decoded images of local files, least recently used dropped first.

    One cache belongs to one transform (one set of decoding settings), so
    an entry is keyed by the path alone; it is valid while the file's size
    and modification time are unchanged. ``get`` returns a copy (later
    transforms may change the array in place).

    Args:
        max_bytes (int): bound on the cached arrays' total size; an image
            larger than it is not cached.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f'cache_bytes must be >= 0, got {max_bytes}')
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = self.misses = 0
        self._entries = OrderedDict()  # path -> (stat, array)

    @staticmethod
    def _stat(path: str):
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns

    def get(self, path: str):
        entry = self._entries.get(path)
        if entry is not None:
            try:
                fresh = entry[0] == self._stat(path)
            except OSError:
                fresh = False
            if fresh:
                self._entries.move_to_end(path)
                self.hits += 1
                return entry[1].copy()
            self._drop(path)
        self.misses += 1
        return None

    def put(self, path: str, img) -> None:
        if img.nbytes > self.max_bytes:
            return
        try:
            stat = self._stat(path)
        except OSError:
            return
        self._drop(path)
        self._entries[path] = (stat, img.copy())
        self.nbytes += img.nbytes
        while self.nbytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, path: str) -> None:
        entry = self._entries.pop(path, None)
        if entry is not None:
            self.nbytes -= entry[1].nbytes


@TRANSFORMS.register_module()
class LoadImageFromFile(MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments, same output:
    ``img`` H x W x 3 uint8 BGR, ``img_shape``, ``ori_shape``) with clear
    errors. With ``ignore_empty=True`` an unreadable or undecodable image is
    skipped (the dataset draws another one; mmcv skips only the former) and
    logged by name.

    Args:
        cache_bytes (int): keep up to this many bytes of decoded images in
            memory, per process (0, the default: no cache). Only local files
            are cached (no ``backend_args``); a file that changes on disk is
            decoded again. 80 tiles of 400 x 400 px take 38 MB.
        *args, **kwargs: mmcv's ``LoadImageFromFile`` arguments.
    """

    # size mismatches logged per transform instance (one per worker)
    max_size_warnings = 5

    def __init__(self, *args, cache_bytes: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._size_warnings = 0
        self.cache = DecodedImageCache(cache_bytes) if cache_bytes else None
        if self.backend_args or self.file_client_args is not None:
            # files behind a backend have no local size and mtime to check
            # an entry against: not cached
            self.cache = None

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        cached = (self.cache is not None and isinstance(filename, str)
                  and '://' not in filename)
        if cached:
            img = self.cache.get(filename)
            if img is not None:
                out = self._with_image(results, img)
                self._check_size(out)
                return out
        out = self._load(results)
        if out is not None and cached:
            self.cache.put(filename, out['img'])
        return out

    @staticmethod
    def _with_image(results: dict, img) -> dict:
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def _load(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        # mmcv's own ignore_empty would swallow every exception, bugs
        # included; the decision is made here instead.
        skip_unreadable, self.ignore_empty = self.ignore_empty, False
        try:
            out = super().transform(results)
        except Exception as err:
            # Only failures to read or decode the file are the image's
            # fault; anything else (a bug, a bad argument) propagates as is.
            if not _is_read_or_decode_error(err):
                raise
            # mmcv's ignore_empty covers read errors but not an image
            # OpenCV decodes to None (its assert fires); cover both
            if not skip_unreadable:
                raise self._load_error(results, err) from err
            out = None
        finally:
            self.ignore_empty = skip_unreadable
        if out is None:
            print_log(
                f"skipped image '{filename}': it cannot be read or decoded "
                '(ignore_empty=True).',
                logger='current',
                level=logging.WARNING)
            return None
        self._check_size(out)
        return out

    @staticmethod
    def _load_error(results: dict, err: Exception) -> OSError:
        filename = results['img_path']
        img = f"image '{filename}'"
        if results.get('img_id') is not None:
            img += f" (img_id={results['img_id']})"
        is_path = isinstance(filename, str) and '://' not in filename
        if isinstance(err, FileNotFoundError) or (
                is_path and not osp.exists(filename)):
            return FileNotFoundError(
                f'{img} does not exist. Check data_root / data_prefix in '
                'the dataset config, or remove the image from the '
                'annotation file.')
        if isinstance(err, (PermissionError, IsADirectoryError)):
            return OSError(f'{img} cannot be read ({type(err).__name__}: '
                           f'{err}). Check the file and its permissions.')
        size = ''
        if is_path:
            size = f', {osp.getsize(filename)} bytes'
        return OSError(
            f'{img} cannot be decoded ({type(err).__name__}: {err}{size}): '
            'the file is corrupted, truncated or not an image. Replace it, '
            'or remove it (and its annotations) from the annotation file.')

    def _check_size(self, results: dict) -> None:
        expected = (results.get('height'), results.get('width'))
        if None in expected or self._size_warnings >= self.max_size_warnings:
            return
        if tuple(results['img'].shape[:2]) != expected:
            self._size_warnings += 1
            last = (' (further mismatches are not logged)'
                    if self._size_warnings == self.max_size_warnings else '')
            print_log(
                f"image '{results['img_path']}' is {results['img'].shape[1]}"
                f"x{results['img'].shape[0]} (w x h) but its annotation says "
                f'{expected[1]}x{expected[0]}; boxes may not line up with '
                f'the image{last}.',
                logger='current',
                level=logging.WARNING)
