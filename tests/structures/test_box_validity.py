"""mmretina.structures.box_validity: the one rule the dataset and the
converters apply, hand-counted cases."""
import numpy as np

from mmretina.structures.box_validity import (CLIPPED, KEPT, NON_FINITE,
                                              NOT_POSITIVE, OUTSIDE,
                                              TOO_SMALL, box_verdicts,
                                              check_box)


def test_each_verdict_on_a_100x50_image():
    boxes = [
        (10, 10, 20, 20),         # inside
        (-5, 10, 20, 60),         # sticks out left and bottom
        (np.nan, 0, 10, 10),      # NaN
        (10, 10, 10, 20),         # zero width
        (30, 10, 20, 20),         # negative width
        (120, 10, 130, 20),       # right of the image
        (99.5, 10, 130, 20),      # 0.5 px inside
        (10, 10, 10.5, 20),       # 0.5 px wide
    ]
    out, verdicts = box_verdicts(boxes, 100, 50)
    assert list(verdicts) == [KEPT, CLIPPED, NON_FINITE, NOT_POSITIVE,
                              NOT_POSITIVE, OUTSIDE, TOO_SMALL, TOO_SMALL]
    np.testing.assert_allclose(out[:2], [[10, 10, 20, 20], [0, 10, 20, 50]])


def test_without_clipping_the_side_is_measured_on_the_whole_box():
    # 0.5 px inside the image but 30.5 px wide: kept unclipped
    assert check_box((99.5, 10, 130, 20), 100, 50, clip=False) == (
        KEPT, (99.5, 10.0, 130.0, 20.0))
    assert check_box((99.5, 10, 130, 20), 100, 50, clip=True) == (
        TOO_SMALL, None)


def test_min_side_is_mmdets_one_pixel_and_configurable():
    assert check_box((0, 0, 1, 1), 10, 10)[0] == KEPT
    assert check_box((0, 0, 0.9, 5), 10, 10)[0] == TOO_SMALL
    assert check_box((0, 0, 0.9, 5), 10, 10, min_side=0.5)[0] == KEPT


def test_empty_input():
    out, verdicts = box_verdicts(np.zeros((0, 4)), 10, 10)
    assert out.shape == (0, 4) and len(verdicts) == 0
