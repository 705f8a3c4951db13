"""``RandomGaussianBlur``: blur the image, leave the boxes.

Aerial images of other sites, sensors or flights are often softer than the
training imagery (in the DeepForest demo the Laplacian variance of the val
images is 0.2-0.6x that of the YELL train tiles). Blurring a random share of
the training images teaches the detector crowns at several sharpnesses.
mmdet 3.3.0's ``Sharpness`` softens with a fixed 3x3 kernel at most; a
Gaussian blur of chosen strength needs its optional albumentations wrapper.
"""
from typing import Sequence

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from ...registry import TRANSFORMS

__all__ = ['RandomGaussianBlur']


@TRANSFORMS.register_module()
class RandomGaussianBlur(BaseTransform):
    """With probability ``prob``, Gaussian-blur ``img`` with a sigma drawn
    uniformly from ``sigma_range`` (pixels; kernel size from sigma, as
    ``cv2.GaussianBlur`` with ``ksize=(0, 0)``).

    Required keys: ``img`` (H x W x C). Modified keys: ``img`` (same shape
    and dtype). Boxes, masks and shapes are unchanged.

    Args:
        prob (float): probability of blurring, in [0, 1].
        sigma_range (sequence of 2 floats): 0 < low <= high.
    """

    def __init__(self, prob: float = 0.5,
                 sigma_range: Sequence[float] = (0.3, 1.0)) -> None:
        if not 0 <= prob <= 1:
            raise ValueError('mmretina.RandomGaussianBlur: prob must be in '
                             f'[0, 1], got {prob}')
        if (len(sigma_range) != 2 or not 0 < sigma_range[0] <= sigma_range[1]):
            raise ValueError('mmretina.RandomGaussianBlur: sigma_range must '
                             'be (low, high) with 0 < low <= high, got '
                             f'{sigma_range}')
        self.prob = prob
        self.sigma_range = tuple(float(s) for s in sigma_range)

    @cache_randomness
    def _sigma(self):
        if np.random.rand() >= self.prob:
            return None
        return float(np.random.uniform(*self.sigma_range))

    def transform(self, results: dict) -> dict:
        sigma = self._sigma()
        if sigma is not None:
            img = results['img']
            results['img'] = cv2.GaussianBlur(
                img, (0, 0), sigmaX=sigma, sigmaY=sigma,
                borderType=cv2.BORDER_REFLECT_101).astype(img.dtype)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, '
                f'sigma_range={self.sigma_range})')
