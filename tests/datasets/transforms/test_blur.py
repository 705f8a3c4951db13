"""mmretina.RandomGaussianBlur: blurs the image only, as configured."""
import cv2
import numpy as np
import pytest
from mmdet.registry import TRANSFORMS

import mmretina  # noqa: F401


def _results(seed=0):
    rng = np.random.RandomState(seed)
    img = rng.randint(0, 256, (48, 64, 3)).astype(np.uint8)
    boxes = np.array([[4, 5, 20, 30]], dtype=np.float32)
    return dict(img=img, gt_bboxes=boxes.copy(), img_shape=(48, 64))


def _build(**kw):
    return TRANSFORMS.build(dict(type='mmretina.RandomGaussianBlur', **kw))


def test_always_blurs_with_prob_1_and_keeps_boxes_shape_dtype():
    res = _results()
    src = res['img'].copy()
    out = _build(prob=1.0, sigma_range=(1.0, 1.0))(res)
    assert out['img'].shape == src.shape and out['img'].dtype == np.uint8
    expected = cv2.GaussianBlur(src, (0, 0), 1.0, sigmaY=1.0,
                                borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_array_equal(out['img'], expected)
    # blurring smooths noise: the Laplacian variance drops
    assert cv2.Laplacian(out['img'], cv2.CV_32F).var() < \
        0.5 * cv2.Laplacian(src, cv2.CV_32F).var()
    np.testing.assert_array_equal(out['gt_bboxes'], [[4, 5, 20, 30]])


def test_never_blurs_with_prob_0():
    res = _results()
    src = res['img'].copy()
    out = _build(prob=0.0)(res)
    np.testing.assert_array_equal(out['img'], src)


def test_blurs_about_prob_of_the_images():
    t = _build(prob=0.3, sigma_range=(0.5, 1.5))
    np.random.seed(0)
    changed = 0
    for i in range(400):
        res = _results(i)
        src = res['img'].copy()
        changed += int(not np.array_equal(t(res)['img'], src))
    assert 80 < changed < 160


@pytest.mark.parametrize('kw,match', [
    (dict(prob=1.5), 'prob must be in'),
    (dict(sigma_range=(0, 1)), 'sigma_range must be'),
    (dict(sigma_range=(2, 1)), 'sigma_range must be'),
    (dict(sigma_range=(1, )), 'sigma_range must be'),
])
def test_bad_arguments_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        _build(**kw)
