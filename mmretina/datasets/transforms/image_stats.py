"""``MatchImageStats``: give every image the same per-channel mean and std.

Aerial images of different sites, flights and sensors differ in brightness
and contrast as a whole (in the DeepForest demo, SOAP_061's channel std is
0.6-0.8x that of the YELL train tiles, OSBS_029 is 10-20 % brighter).
Mean/std normalisation with fixed dataset statistics keeps those
differences; shifting and scaling each image's channels to the same target
statistics removes them before the network sees the image, at train and at
test time alike (it uses the image alone, no labels).
"""
from typing import Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from ...registry import TRANSFORMS

__all__ = ['MatchImageStats']


@TRANSFORMS.register_module()
class MatchImageStats(BaseTransform):
    """Shift and scale each channel of ``img`` so that its mean and standard
    deviation over the image become ``mean[c]`` and ``std[c]``.

    ``out[..., c] = (img[..., c] - img_mean[c]) / img_std[c] * std[c] +
    mean[c]``. A uint8 image is rounded and clipped back to uint8; a float
    image stays float32 (no clipping). A channel with (near) zero spread
    (std < ``min_std``, e.g. an all-black image) is only shifted.

    Required keys: ``img`` (H x W x C, channels in the order of ``mean``:
    BGR as loaded by ``LoadImageFromFile``). Modified keys: ``img`` (same
    shape and dtype). Boxes and shapes are unchanged.

    Args:
        mean (sequence of C floats): target mean per channel.
        std (sequence of C floats): target std per channel, all > 0.
        min_std (float): spread below which a channel is not rescaled.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 min_std: float = 1.0) -> None:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std, dtype=np.float32).reshape(-1)
        if mean.shape != std.shape or mean.size == 0:
            raise ValueError('mmretina.MatchImageStats: mean and std need '
                             'one value per channel each, got '
                             f'{mean.tolist()} and {std.tolist()}')
        if not (np.isfinite(mean).all() and np.isfinite(std).all()
                and (std > 0).all()):
            raise ValueError('mmretina.MatchImageStats: mean must be finite '
                             f'and std > 0, got {mean.tolist()} and '
                             f'{std.tolist()}')
        self.mean, self.std, self.min_std = mean, std, float(min_std)

    def transform(self, results: dict) -> dict:
        img = results['img']
        channels = img.shape[2] if img.ndim == 3 else 1
        if channels != self.mean.size:
            raise ValueError(
                f'mmretina.MatchImageStats: the image has {channels} '
                f'channels but mean/std have {self.mean.size} '
                f"({results.get('img_path', 'image')})")
        x = img.astype(np.float32).reshape(-1, channels)
        img_mean = x.mean(0)
        img_std = x.std(0)
        gain = np.where(img_std >= self.min_std,
                        self.std / np.maximum(img_std, 1e-6), 1.0)
        out = ((x - img_mean) * gain + self.mean).reshape(img.shape)
        if img.dtype == np.uint8:
            out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        else:
            out = out.astype(np.float32)
        results['img'] = out
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(mean={self.mean.tolist()}, '
                f'std={self.std.tolist()}, min_std={self.min_std})')
