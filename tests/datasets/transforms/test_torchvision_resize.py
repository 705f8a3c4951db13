"""TorchvisionResize: torchvision's GeneralizedRCNNTransform resize."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.structures.bbox import HorizontalBoxes

from mmretina.datasets.transforms import TorchvisionResize
from mmretina.datasets.transforms.torchvision_resize import \
    torchvision_resize


def _torchvision_reference(img, min_size, max_size):
    """torchvision's _resize_image_and_masks (eager path), written out."""
    x = torch.from_numpy(img).permute(2, 0, 1).float()
    h, w = x.shape[-2:]
    scale = min(float(min_size) / min(h, w), float(max_size) / max(h, w))
    return F.interpolate(x[None], size=None, scale_factor=scale,
                         mode='bilinear', recompute_scale_factor=True,
                         align_corners=False)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize('shape,min_size,max_size', [
    ((400, 400), 800, 1333),  # DeepForest tiles: 2x up
    ((333, 517), 800, 1333),  # odd size: floor(h * s)
    ((300, 1200), 800, 1333),  # the long side binds
    ((640, 480), 320, 533),  # down
])
def test_size_and_values_are_torchvision(shape, min_size, max_size):
    img = np.random.RandomState(0).randint(0, 256, shape + (3, ))
    img = img.astype(np.uint8)
    out = torchvision_resize(img, min_size, max_size)
    ref = _torchvision_reference(img, min_size, max_size)
    assert out.dtype == np.float32 and out.shape == ref.shape
    scale = min(min_size / min(shape), max_size / max(shape))
    assert out.shape[:2] == (int(shape[0] * scale), int(shape[1] * scale))
    np.testing.assert_array_equal(out, ref)
    # float pixels: not rounded to grey levels as OpenCV on uint8 would
    assert not np.allclose(out, np.round(out))


def test_transform_sets_shapes_scale_factor_and_boxes():
    img = np.zeros((333, 517, 3), np.uint8)
    boxes = HorizontalBoxes(torch.tensor([[10., 20., 110., 220.],
                                          [500., 300., 517., 333.]]))
    t = TorchvisionResize(min_size=800, max_size=1333)
    out = t.transform(dict(img=img, gt_bboxes=boxes.clone()))
    h, w = out['img'].shape[:2]
    assert out['img_shape'] == (h, w) and out['scale'] == (w, h)
    sw, sh = out['scale_factor']
    assert (sw, sh) == (w / 517, h / 333)
    expected = boxes.tensor * torch.tensor([sw, sh, sw, sh])
    expected[:, 0::2] = expected[:, 0::2].clamp(0, w)
    expected[:, 1::2] = expected[:, 1::2].clamp(0, h)
    torch.testing.assert_close(out['gt_bboxes'].tensor, expected)
    assert out['homography_matrix'][0, 0] == np.float32(sw)


def test_multi_scale_training_samples_min_size():
    np.random.seed(0)
    t = TorchvisionResize(min_size=(64, 96, 128), max_size=1000)
    sizes = {t.transform(dict(img=np.zeros((50, 50, 3), np.uint8)))[
        'img_shape'][0] for _ in range(30)}
    assert sizes == {64, 96, 128}


def test_bad_sizes():
    with pytest.raises(ValueError, match='min_size and max_size must be '
                       'positive'):
        TorchvisionResize(min_size=0)
    with pytest.raises(ValueError, match='empty'):
        torchvision_resize(np.zeros((0, 5, 3), np.uint8), 800, 1333)
