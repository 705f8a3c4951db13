"""mmretina.LoadImageFromFile: mmcv's output for a good image; a missing,
empty or undecodable file raises an error naming it."""

import cv2
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmdet.registry import TRANSFORMS as MMDET_TRANSFORMS
from mmengine.logging import MMLogger

from mmretina.datasets.transforms import LoadImageFromFile


def results_for(path, height=None, width=None):
    results = dict(img_path=str(path), img_id=7)
    if height is not None:
        results.update(height=height, width=width)
    return results


@pytest.fixture
def good_png(tmp_path):
    path = tmp_path / 'good.png'
    img = np.random.RandomState(0).randint(0, 255, (12, 20, 3), np.uint8)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / 'log.txt'
    MMLogger.get_instance(
        f'test_loading_{tmp_path.name}', log_file=str(path),
        log_level='INFO')
    return lambda: path.read_text()


def test_good_image_loads_as_mmcv_does(good_png):
    ours = LoadImageFromFile()(results_for(good_png, 12, 20))
    theirs = MMCVLoadImageFromFile()(results_for(good_png))
    assert ours['img'].shape == (12, 20, 3)
    np.testing.assert_array_equal(ours['img'], theirs['img'])
    assert ours['img_shape'] == ours['ori_shape'] == (12, 20)


def test_built_by_prefixed_name():
    t = MMDET_TRANSFORMS.build(dict(type='mmretina.LoadImageFromFile'))
    assert type(t) is LoadImageFromFile


def test_missing_image_is_named(tmp_path):
    path = tmp_path / 'gone.png'
    with pytest.raises(FileNotFoundError,
                       match=r"image '.*gone.png' \(img_id=7\) does not "
                       r'exist. Check data_root / data_prefix'):
        LoadImageFromFile()(results_for(path))


@pytest.mark.parametrize('content,size', [
    (b'', 0),  # OpenCV: "(-215:Assertion failed) !buf.empty()"
    (b'this is not an image at all', 27),  # mmcv: AssertionError
])
@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_undecodable_image_is_named(tmp_path, content, size, backend):
    path = tmp_path / 'broken.jpg'
    path.write_bytes(content)
    t = LoadImageFromFile(imdecode_backend=backend)
    with pytest.raises(OSError) as exc:
        t(results_for(path))
    msg = str(exc.value)
    assert f"image '{path}' (img_id=7) cannot be decoded (" in msg
    assert f', {size} bytes): the file is corrupted, truncated or not an ' \
        'image.' in msg
    assert not isinstance(exc.value, FileNotFoundError)


def test_truncated_png_is_named(tmp_path, good_png):
    data = good_png.read_bytes()
    path = tmp_path / 'cut.png'
    path.write_bytes(data[:len(data) // 3])
    with pytest.raises(OSError, match=r"image '.*cut.png' \(img_id=7\) "
                       'cannot be decoded'):
        LoadImageFromFile()(results_for(path))


def test_ignore_empty_skips_and_logs(tmp_path, log_file):
    path = tmp_path / 'broken.png'
    path.write_bytes(b'garbage')
    assert LoadImageFromFile(ignore_empty=True)(results_for(path)) is None
    assert f"skipped image '{path}': it cannot be read or decoded " \
        '(ignore_empty=True)' in log_file()


def test_size_other_than_annotation_is_logged(good_png, log_file):
    t = LoadImageFromFile()
    out = t(results_for(good_png, height=20, width=12))  # swapped
    assert out['img'].shape[:2] == (12, 20)
    assert f"image '{good_png}' is 20x12 (w x h) but its annotation says " \
        '12x20; boxes may not line up' in log_file()


@pytest.mark.parametrize('ignore_empty', [False, True])
def test_programming_errors_are_not_reported_as_a_corrupt_image(
        good_png, monkeypatch, ignore_empty):
    """A bug (here a TypeError inside the decoder call) propagates as is:
    it is not the image's fault, and ignore_empty must not skip it."""
    import mmcv

    def broken(*args, **kwargs):
        raise TypeError('imfrombytes() got an unexpected keyword argument')

    monkeypatch.setattr(mmcv, 'imfrombytes', broken)
    with pytest.raises(TypeError, match='unexpected keyword'):
        LoadImageFromFile(ignore_empty=ignore_empty).transform(
            results_for(good_png))


def test_io_errors_from_the_backend_are_named(good_png, monkeypatch):
    from mmengine import fileio

    def denied(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(fileio, 'get', denied)
    with pytest.raises(OSError, match='cannot be read.*Permission'):
        LoadImageFromFile().transform(results_for(good_png))
