"""mmretina.MatchImageStats: every image leaves with the target channel
mean/std, boxes untouched; flat channels and bad arguments handled."""
import numpy as np
import pytest
from mmdet.registry import TRANSFORMS

import mmretina  # noqa: F401

MEAN = [122.25, 144.97, 130.73]
STD = [39.62, 55.48, 60.37]


def _build(**kw):
    kw.setdefault('mean', MEAN)
    kw.setdefault('std', STD)
    return TRANSFORMS.build(dict(type='mmretina.MatchImageStats', **kw))


def _results(img):
    return dict(img=img, gt_bboxes=np.array([[4, 5, 20, 30]], np.float32),
                img_shape=img.shape[:2])


@pytest.mark.parametrize('low,high', [(100, 160), (0, 255), (180, 250)])
def test_uint8_image_gets_target_stats(low, high):
    # e.g. a low-contrast image (like SOAP_061 against the YELL tiles); a
    # uniform spread, so the target stats need no clipping to 0-255
    rng = np.random.RandomState(0)
    src = rng.randint(low, high + 1, (120, 160, 3)).astype(np.uint8)
    out = _build()(_results(src.copy()))
    img = out['img']
    assert img.dtype == np.uint8 and img.shape == src.shape
    x = img.reshape(-1, 3).astype(np.float64)
    # rounding to uint8 leaves small differences
    np.testing.assert_allclose(x.mean(0), MEAN, atol=0.5)
    np.testing.assert_allclose(x.std(0), STD, rtol=0.01)
    np.testing.assert_array_equal(out['gt_bboxes'], [[4, 5, 20, 30]])
    # a monotone map per channel: the order of pixel values is kept
    for c in range(3):
        order = np.argsort(src[..., c].ravel(), kind='stable')
        assert (np.diff(img[..., c].ravel()[order].astype(int)) >= 0).all()


def test_float_image_is_exact_and_unclipped():
    rng = np.random.RandomState(1)
    # heavy tails: the output goes outside 0-255 and is kept so
    src = rng.standard_t(2, (32, 32, 3)).astype(np.float32)
    img = _build()(_results(src))['img']
    assert img.min() < 0 and img.max() > 255
    assert img.dtype == np.float32
    x = img.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(x.mean(0), MEAN, rtol=1e-4)
    np.testing.assert_allclose(x.std(0), STD, rtol=1e-4)


def test_same_output_for_brightness_and_contrast_changes():
    """The point of the transform: a global gain/offset per channel (another
    site's exposure) does not reach the network."""
    rng = np.random.RandomState(2)
    src = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)
    t = _build()
    a = t(_results(src * 100 + 20))['img']
    b = t(_results(src * 37 + 150))['img']
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_flat_channel_is_only_shifted():
    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 1] = 7  # flat
    img[:8, :, 2] = 200  # two values
    out = _build()(_results(img))['img']
    assert (out[..., 0] == 122).all() and (out[..., 1] == 145).all()
    assert out[..., 2].std() == pytest.approx(STD[2], rel=0.02)


def test_channel_count_mismatch_names_the_image():
    res = _results(np.zeros((8, 8), np.uint8))
    res['img_path'] = 'gray.png'
    with pytest.raises(ValueError, match=r'1 channels but mean/std have 3 '
                       r'\(gray.png\)'):
        _build()(res)


@pytest.mark.parametrize('kw,match', [
    (dict(mean=[1, 2]), 'one value per channel'),
    (dict(mean=[]), 'one value per channel'),
    (dict(std=[1, 0, 1]), 'std > 0'),
    (dict(mean=[1, float('nan'), 2]), 'finite'),
])
def test_bad_arguments_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        _build(**kw)
