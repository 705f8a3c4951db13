"""mmretina.structures.rotated.min_area_rboxes: OpenCV's minimum-area
rectangle (mmrotate's qbox2rbox), in float64."""
import numpy as np
import pytest

pytest.importorskip('shapely')
pytest.importorskip('cv2')


def same_rectangle(p, q, atol):
    """Four corners each (8,): the same points, in any order."""
    p, q = p.reshape(4, 2), q.reshape(4, 2)
    return np.linalg.norm(p[:, None] - q[None], axis=-1).min(1).max() < atol


def test_min_area_rboxes_is_opencvs_rectangle_in_float64():
    import torch

    from mmretina.structures.rotated import (corners_to_rbox,
                                             min_area_rboxes, rbox_corners)
    rng = np.random.default_rng(0)
    # random polygons (8 vertices, concave too) about the origin: OpenCV's
    # float32 is precise here, so both must give the same rectangle
    sets = rng.normal(0, 20, (50, 8, 2)) * rng.uniform(0.2, 1, (50, 1, 2))
    ours = min_area_rboxes(sets.reshape(-1, 2), np.repeat(np.arange(50), 8),
                           50)
    ref = corners_to_rbox(sets).double().numpy()
    assert np.allclose(ours[:, 2] * ours[:, 3], ref[:, 2] * ref[:, 3],
                       rtol=1e-5)
    for p, q in zip(rbox_corners(torch.from_numpy(ours)).numpy(),
                    rbox_corners(torch.from_numpy(ref)).numpy()):
        assert same_rectangle(p.ravel(), q.ravel(), 1e-3)
    # a rectangle 10 km from the origin: float32 would be off by 1e-3 px
    truth = np.array([[12345.678, 9876.543, 40.25, 12.5, 0.3]])
    corners = rbox_corners(torch.from_numpy(truth)).numpy().reshape(-1, 2)
    np.testing.assert_allclose(
        min_area_rboxes(corners, np.zeros(4, int), 1), truth, atol=1e-9)
    assert abs(corners_to_rbox(corners[None])[0, 2].item() - 40.25) > 1e-4
    # a set with a vertex that does not project, and an empty set
    out = min_area_rboxes(np.array([[0, 0], [np.inf, 1], [1, 1]]),
                          np.array([0, 0, 0]), 2)
    assert np.isnan(out).all()
