"""``TorchvisionResize``: torchvision's detection resize, for models converted
from torchvision (:mod:`mmretina.models.converters.torchvision`).

torchvision's ``GeneralizedRCNNTransform`` scales an image by
``min(min_size / min(h, w), max_size / max(h, w))`` and resizes it with
``torch.nn.functional.interpolate(mode='bilinear', align_corners=False,
recompute_scale_factor=True)`` on float pixels: the output is
``floor(h * scale) x floor(w * scale)``, and its values are not rounded to
integers. mmdet's ``Resize`` (OpenCV on uint8, rounded sizes) differs by up to
a grey level and sometimes a pixel of size, which moves detections. This
transform reproduces torchvision's arithmetic; its output image is float32.

torchvision normalises before resizing; bilinear weights sum to one, so
resizing the raw pixels and normalising afterwards (mmdet's data
preprocessor) gives the same values up to float rounding.
"""
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.datasets.transforms import Resize
from mmdet.structures.bbox import autocast_box_type

from ...registry import TRANSFORMS

__all__ = ['TorchvisionResize', 'torchvision_resize']


def torchvision_resize(img: np.ndarray, min_size: float,
                       max_size: float) -> np.ndarray:
    """Resize an image as torchvision's ``_resize_image_and_masks``.

    Args:
        img (ndarray): H x W x C image, any numeric dtype (channel order is
            kept).
        min_size (float): target length of the shorter side.
        max_size (float): bound on the longer side.

    Returns:
        ndarray: H' x W' x C float32 with H' = floor(H * s), W' = floor(W *
        s), s = min(min_size / min(H, W), max_size / max(H, W)).
    """
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    if min(h, w) <= 0:
        raise ValueError(f'TorchvisionResize: image of size {h}x{w} is empty')
    scale = min(float(min_size) / min(h, w), float(max_size) / max(h, w))
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    x = x.permute(2, 0, 1)[None]
    out = F.interpolate(
        x,
        size=None,
        scale_factor=scale,
        mode='bilinear',
        recompute_scale_factor=True,
        align_corners=False)[0]
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


@TRANSFORMS.register_module()
class TorchvisionResize(Resize):
    """Resize like torchvision's ``GeneralizedRCNNTransform`` (module
    docstring); boxes, masks and segmentation maps as mmdet's ``Resize``.

    Required keys: ``img``. Modified keys: ``img`` (float32 H' x W' x C),
    ``img_shape``, ``gt_bboxes`` (scaled, clipped to the image when
    ``clip_object_border``), ``gt_masks``, ``gt_seg_map``. Added keys:
    ``scale`` (w', h'), ``scale_factor`` (w' / w, h' / h), ``keep_ratio``,
    ``homography_matrix``.

    Args:
        min_size (int | sequence[int]): target shorter side. A sequence is
            sampled uniformly per image, as torchvision does in training
            (it uses the last value at test time: give an int there).
        max_size (int): bound on the longer side.
        clip_object_border (bool): clip boxes to the image.
    """

    def __init__(self,
                 min_size: Union[int, Sequence[int]] = 800,
                 max_size: int = 1333,
                 clip_object_border: bool = True) -> None:
        sizes = [min_size] if isinstance(min_size, (int, float)) else \
            list(min_size)
        if not sizes or min(sizes) <= 0 or max_size <= 0:
            raise ValueError('mmretina.TorchvisionResize: min_size and '
                             f'max_size must be positive, got {min_size}, '
                             f'{max_size}')
        # keep_ratio=False: masks and maps are resized to the exact image
        # size computed here (the aspect ratio is kept by construction).
        super().__init__(
            scale=(int(max_size), int(max(sizes))),
            keep_ratio=False,
            clip_object_border=clip_object_border)
        self.min_size = min_size
        self.min_sizes = sizes
        self.max_size = max_size

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        min_size = self.min_sizes[np.random.randint(len(self.min_sizes))]
        resized = torchvision_resize(img, min_size, self.max_size)
        if img.ndim == 2:
            resized = resized[..., 0]
        new_h, new_w = resized.shape[:2]
        results['img'] = resized
        results['img_shape'] = (new_h, new_w)
        results['scale'] = (new_w, new_h)
        results['scale_factor'] = (new_w / w, new_h / h)
        results['keep_ratio'] = True
        self._resize_bboxes(results)
        self._resize_masks(results)
        self._resize_seg(results)
        self._record_homography_matrix(results)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(min_size={self.min_size}, '
                f'max_size={self.max_size}, '
                f'clip_object_border={self.clip_object_border})')
