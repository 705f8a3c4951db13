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


# ---------------------------------------------------------------------------
# cache_bytes: decoded images kept in memory
# ---------------------------------------------------------------------------
def write_png(path, seed, shape=(12, 20, 3)):
    img = np.random.RandomState(seed).randint(0, 255, shape, np.uint8)
    cv2.imwrite(str(path), img)
    return img


def test_cache_decodes_each_file_once(good_png, monkeypatch):
    import mmcv
    decodes = []
    real = mmcv.imfrombytes
    monkeypatch.setattr(mmcv, 'imfrombytes',
                        lambda *a, **k: decodes.append(1) or real(*a, **k))
    t = LoadImageFromFile(cache_bytes=1 << 20)
    first = t(results_for(good_png, 12, 20))['img']
    second = t(results_for(good_png, 12, 20))
    assert len(decodes) == 1
    assert (t.cache.hits, t.cache.misses) == (1, 1)
    np.testing.assert_array_equal(first, second['img'])
    np.testing.assert_array_equal(
        second['img'], MMCVLoadImageFromFile()(results_for(good_png))['img'])
    assert second['img_shape'] == second['ori_shape'] == (12, 20)
    # a hit is a copy: changing it in place (as transforms do) changes
    # neither the cache nor the next result
    second['img'][:] = 0
    np.testing.assert_array_equal(t(results_for(good_png))['img'], first)


def test_cache_keeps_float32_option_apart(good_png):
    t = LoadImageFromFile(cache_bytes=1 << 20, to_float32=True)
    a = t(results_for(good_png))['img']
    b = t(results_for(good_png))['img']
    assert a.dtype == b.dtype == np.float32 and t.cache.hits == 1


def test_cache_sees_a_changed_file(tmp_path):
    path = tmp_path / 'x.png'
    write_png(path, 0)
    t = LoadImageFromFile(cache_bytes=1 << 20)
    t(results_for(path))
    new = write_png(path, 1, (14, 20, 3))  # other size, other mtime
    out = t(results_for(path))
    np.testing.assert_array_equal(out['img'], new)
    assert t.cache.hits == 0


def test_cache_is_bounded_least_recently_used_first(tmp_path):
    paths = [tmp_path / f'{i}.png' for i in range(3)]
    for i, p in enumerate(paths):
        write_png(p, i)
    one = 12 * 20 * 3
    t = LoadImageFromFile(cache_bytes=2 * one)
    t(results_for(paths[0]))
    t(results_for(paths[1]))
    t(results_for(paths[0]))          # 0 is now the most recent
    t(results_for(paths[2]))          # drops 1
    assert t.cache.nbytes == 2 * one
    hits = t.cache.hits
    t(results_for(paths[0]))
    t(results_for(paths[2]))
    assert t.cache.hits == hits + 2
    t(results_for(paths[1]))
    assert t.cache.hits == hits + 2   # 1 was decoded again
    # an image larger than the whole cache is not kept
    small = LoadImageFromFile(cache_bytes=one - 1)
    small(results_for(paths[0]))
    assert small.cache.nbytes == 0


def test_cache_does_not_hide_a_missing_or_broken_file(tmp_path):
    path = tmp_path / 'x.png'
    write_png(path, 0)
    t = LoadImageFromFile(cache_bytes=1 << 20)
    t(results_for(path))
    path.write_bytes(b'not a png')
    with pytest.raises(OSError, match='cannot be decoded'):
        t(results_for(path))
    path.unlink()
    with pytest.raises(FileNotFoundError, match='does not exist'):
        t(results_for(path))


def test_cache_bytes_must_not_be_negative():
    with pytest.raises(ValueError, match='cache_bytes must be >= 0'):
        LoadImageFromFile(cache_bytes=-1)
