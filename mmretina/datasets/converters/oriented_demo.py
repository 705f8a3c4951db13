"""A small oriented-object data set for demos and tests: real aerial
backgrounds from the DeepForest wheel with synthetic vehicles and boats
packed at any angle, written in DOTA's layout.

Why synthetic objects on real backgrounds: the wheel ships aerial images
(NEON RGB at 0.1 m, a drone photograph of a lake) but no oriented labels,
and DOTA itself is too large for a CPU demo. Parked cars and moored boats
are the case oriented boxes exist for: elongated objects, side by side,
at one angle per row, touching their neighbours. Their axis-aligned boxes
are mostly background and overlap: a 3:1 car at 45 degrees fills 37.5 % of
its enclosing box, so even a perfect axis-aligned box has rotated IoU
0.375 with it, below DOTA's 0.5 (a 3:1 rectangle fills half its enclosing
box at 18.4 degrees from an axis: beyond that, no axis-aligned box scores);
two such cars touching side by side have enclosing boxes of IoU 0.39. In
the default set, 53 % of the objects have a neighbour whose enclosing box
overlaps theirs at IoU >= 0.1 and 15 % at >= 0.3.

Each object is a 3:1 rectangle (``small-vehicle`` 16-22 px long, ``ship``
26-36 px) with a cue of its heading: a vehicle's windscreen is a dark band
near its front, a ship's bow is pointed. Rows of 3-9 vehicles (half of them
with a second row facing the first, as in a parking lot) and of 3-7 ships
(a marina) are placed at random angles, neighbours 0.3-2 px apart, with a
few single objects; objects never overlap and lie wholly in the image.

Splits are by background image, so the test backgrounds are never seen in
training (:data:`SPLIT_BACKGROUNDS`); every image is a random crop of its
split's backgrounds (flipped and turned by multiples of 90 degrees). The
set is a function of the seed (and the wheel). Layout::

    OUT/train/images/train_0000.png   OUT/train/annfiles/train_0000.txt
    OUT/val/...                       OUT/test/...
    OUT/oriented_demo.json            classes, seed, images / objects /
                                      backgrounds per split

the layout of mmrotate's ``DOTADataset(ann_file='annfiles/',
data_prefix=dict(img_path='images/'))``; the labels are DOTA's text lines
(:func:`~.dota.write_dota_labels`): four corners in pixels of the image,
front-left first, the class and difficult 0.
"""
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .deepforest import PACKAGE, VERSION, WheelData, find_wheel_in
from .dota import write_dota_labels

__all__ = [
    'CLASSES', 'SPLIT_BACKGROUNDS', 'NUM_IMAGES', 'default_wheel',
    'object_corners', 'draw_scene', 'make_oriented_demo'
]

CLASSES = ('small-vehicle', 'ship')  # DOTA-v1.0's names
# background images (stems in the wheel's deepforest/data/) of each split:
# four sites and a lake, none shared between splits
SPLIT_BACKGROUNDS = {
    'train': ('2019_YELL_2_528000_4978000_image_crop2', 'SOAP_031',
              'AWPE Pigeon Lake 2020 DJI_0005'),
    'val': ('OSBS_029', ),
    'test': ('2019_YELL_2_541000_4977000_image_crop', 'SOAP_061'),
}
NUM_IMAGES = {'train': 32, 'val': 8, 'test': 16}
# (length range in px, width / length): 3:1 rectangles
_SHAPES = {'small-vehicle': ((16.0, 22.0), 1 / 3),
           'ship': ((26.0, 36.0), 1 / 3)}
_CAR_COLOURS = ((235, 235, 232), (28, 28, 30), (178, 180, 184),
                (165, 32, 30), (35, 62, 140), (108, 110, 112),
                (200, 190, 160), (40, 90, 60))
_BOAT_COLOURS = ((240, 240, 240), (215, 220, 228), (170, 40, 35),
                 (50, 80, 150), (228, 222, 200))
_SHIFT = 4  # cv2 polygons with 4 fractional bits: sub-pixel corners


def default_wheel() -> Optional[str]:
    """The ``deepforest==2.1.0`` wheel: ``$MMRETINA_DEEPFOREST_WHEEL``, else
    the one in ``~/.cache/mmretina`` (where the tests put it), else None."""
    path = os.environ.get('MMRETINA_DEEPFOREST_WHEEL')
    if path:
        return path
    return find_wheel_in(osp.join(osp.expanduser('~'), '.cache', 'mmretina'))


def object_corners(center: Sequence[float], length: float, width: float,
                   heading: float) -> np.ndarray:
    """The four corners of a rectangle, front-left first.

    Args:
        center: (cx, cy) in pixels of the image.
        length, width (float): sides in px, ``length`` along the heading.
        heading (float): direction of the front, radians from the image's
            x axis towards its y axis (down).

    Returns:
        ndarray: 4 x 2 float64 (front-left, front-right, rear-right,
        rear-left), clockwise on the screen.
    """
    u = np.array([np.cos(heading), np.sin(heading)])
    v = np.array([-u[1], u[0]])  # the object's right side (y down)
    c = np.asarray(center, np.float64)
    hl, hw = length / 2, width / 2
    return np.stack([c + hl * u - hw * v, c + hl * u + hw * v,
                     c - hl * u + hw * v, c - hl * u - hw * v])


def _fill(img: np.ndarray, poly: np.ndarray, colour) -> None:
    pts = np.round(poly * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, _SHIFT)


def _band(corners: np.ndarray, start: float, end: float,
          inset: float) -> np.ndarray:
    """The part of a rectangle between ``start`` and ``end`` (fractions of
    its length from the front), ``inset`` (fraction of its width) in from
    each side."""
    fl, fr, rr, rl = corners
    left = [fl + (rl - fl) * t for t in (start, end)]
    right = [fr + (rr - fr) * t for t in (start, end)]
    a, b = left[0] + (right[0] - left[0]) * inset, \
        right[0] + (left[0] - right[0]) * inset
    c, d = right[1] + (left[1] - right[1]) * inset, \
        left[1] + (right[1] - left[1]) * inset
    return np.stack([a, b, c, d])


def _jitter(rng: np.random.Generator, colour, amount: int = 14):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255))
                 for c in colour)


def _draw_object(img: np.ndarray, corners: np.ndarray, label: str,
                 rng: np.random.Generator) -> None:
    if label == 'small-vehicle':
        body = _jitter(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))])
        _fill(img, corners, body)
        dark = tuple(int(c * 0.25) + 12 for c in body)
        # windscreen: the dark band near the front (the heading cue)
        _fill(img, _band(corners, 0.16, 0.36, 0.08), dark)
        _fill(img, _band(corners, 0.76, 0.86, 0.12),
              tuple(int(c * 0.5) + 10 for c in body))
    else:
        hull = _jitter(rng, _BOAT_COLOURS[rng.integers(len(_BOAT_COLOURS))])
        fl, fr, rr, rl = corners
        bow = (fl + fr) / 2  # pointed bow at the front edge's middle
        shoulder_l, shoulder_r = fl + (rl - fl) * 0.3, fr + (rr - fr) * 0.3
        _fill(img, np.stack([bow, shoulder_r, rr, rl, shoulder_l]), hull)
        _fill(img, _band(corners, 0.45, 0.75, 0.22),
              tuple(int(c * 0.45) for c in hull))


def _row(rng: np.random.Generator, size: int, label: str,
         count: int, facing: bool) -> List[Tuple[np.ndarray, str]]:
    """One row of ``count`` objects side by side at one angle (and, with
    ``facing``, a second row nose to nose with it)."""
    (lo, hi), ratio = _SHAPES[label]
    length = rng.uniform(lo, hi)
    heading = rng.uniform(0, 2 * np.pi)
    u = np.array([np.cos(heading), np.sin(heading)])
    v = np.array([-u[1], u[0]])
    start = rng.uniform(0, size, 2)
    rows = [(start, heading)]
    if facing:  # the second row faces the first, 0.5-2.5 px in front
        gap = rng.uniform(0.5, 2.5)
        rows.append((start + u * (length + gap), heading + np.pi))
    objects = []
    for origin, head in rows:
        offset = 0.0
        for _ in range(count):
            obj_len = length * rng.uniform(0.94, 1.06)
            width = obj_len * ratio * rng.uniform(0.9, 1.1)
            offset += width / 2
            # both rows run along the first row's v
            center = origin + v * offset + u * rng.uniform(-1.5, 1.5)
            angle = head + np.deg2rad(rng.uniform(-4, 4))
            objects.append((object_corners(center, obj_len, width, angle),
                            label))
            offset += width / 2 + rng.uniform(0.3, 2.0)
    return objects


def _fits(corners: np.ndarray, occupied: np.ndarray, size: int) -> bool:
    if corners.min() < 0.5 or corners.max() > size - 0.5:
        return False
    # shrunk by 0.5 px: neighbours may touch, never overlap
    c = corners.mean(0)
    inner = c + (corners - c) * (1 - 1.0 / max(
        np.linalg.norm(corners[0] - corners[2]), 2.0))
    mask = np.zeros_like(occupied)
    _fill(mask, inner, 1)
    return not (mask & occupied).any()


def draw_scene(background: np.ndarray, rng: np.random.Generator,
               min_objects: int = 20, max_objects: int = 45
               ) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Pack rows of vehicles and boats onto a background.

    Args:
        background (ndarray): H x W x 3 uint8 RGB, square (H == W).
        rng (numpy.random.Generator): the only source of randomness.
        min_objects, max_objects (int): the scene aims at a count drawn
            between them (fewer where the rows do not fit).

    Returns:
        tuple: the image (H x W x 3 uint8 RGB), the objects' corners
        (N x 4 x 2 float64, pixels of the image, front-left first) and
        their N class names.
    """
    size = background.shape[0]
    img = background.copy()
    occupied = np.zeros((size, size), np.uint8)
    target = int(rng.integers(min_objects, max_objects + 1))
    placed: List[Tuple[np.ndarray, str]] = []
    for _ in range(200):
        if len(placed) >= target:
            break
        kind = rng.random()
        if kind < 0.55:
            group = _row(rng, size, 'small-vehicle', int(rng.integers(3, 10)),
                         facing=rng.random() < 0.5)
        elif kind < 0.85:
            group = _row(rng, size, 'ship', int(rng.integers(3, 8)),
                         facing=False)
        else:  # a single object
            group = _row(rng, size, CLASSES[int(rng.integers(2))], 1,
                         facing=False)
        for corners, label in group:
            if len(placed) < target and _fits(corners, occupied, size):
                _fill(occupied, corners, 1)
                placed.append((corners, label))
    # shadows first (sun from the top left), then the objects over them
    shade = np.zeros((size, size), np.uint8)
    for corners, _ in placed:
        _fill(shade, corners + 1.5, 255)
    img = (img * (1 - 0.45 * shade[..., None] / 255.0)).astype(np.uint8)
    for corners, label in placed:
        _draw_object(img, corners, label, rng)
    noise = rng.normal(0, 3, img.shape)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    corners = np.array([c for c, _ in placed], np.float64).reshape(-1, 4, 2)
    return img, corners, [label for _, label in placed]


def _crop(image: np.ndarray, size: int,
          rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    if min(h, w) < size:
        scale = size / min(h, w)
        image = cv2.resize(image, (int(np.ceil(w * scale)),
                                   int(np.ceil(h * scale))),
                           interpolation=cv2.INTER_LINEAR)
        h, w = image.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size
                                                               + 1))
    crop = image[y:y + size, x:x + size]
    crop = np.rot90(crop, int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def make_oriented_demo(out_dir: str,
                       wheel: Optional[str] = None,
                       seed: int = 0,
                       size: int = 256,
                       num_images: Optional[Dict[str, int]] = None,
                       min_objects: int = 20,
                       max_objects: int = 45,
                       log: Callable[[str], None] = print) -> dict:
    """Write the oriented demo set (see the module docstring).

    Args:
        out_dir (str): a new or empty folder (or one this function wrote
            with the same arguments: it is rewritten).
        wheel (str, optional): the ``deepforest==2.1.0`` wheel; default
            :func:`default_wheel`. Nothing is downloaded.
        seed (int): the set is a function of the seed.
        size (int): side of the square images in px.
        num_images (dict, optional): images per split (``train``, ``val``,
            ``test``); default :data:`NUM_IMAGES`. A split given 0 images is
            not written.
        min_objects, max_objects (int): objects per image (see
            :func:`draw_scene`).
        log (callable): one line per split.

    Returns:
        dict: what ``OUT/oriented_demo.json`` holds: ``classes``, ``seed``,
        ``size`` and, per split, ``images``, ``objects`` and
        ``backgrounds``.
    """
    wheel = wheel or default_wheel()
    if not wheel or not osp.isfile(wheel):
        raise FileNotFoundError(
            f'the {PACKAGE}=={VERSION} wheel (the backgrounds) was not found'
            f'{" at " + wheel if wheel else ""}: download it once with '
            f'`pip download {PACKAGE}=={VERSION} --no-deps -d '
            '~/.cache/mmretina` and pass it with --wheel (or set '
            'MMRETINA_DEEPFOREST_WHEEL)')
    if size < 64:
        raise ValueError(f'size={size}: images of at least 64 px hold a row '
                         'of objects')
    counts = dict(NUM_IMAGES if num_images is None else num_images)
    unknown = set(counts) - set(SPLIT_BACKGROUNDS)
    if unknown:
        raise ValueError(f'num_images: unknown split(s) {sorted(unknown)}; '
                         f'the splits are {list(SPLIT_BACKGROUNDS)}')
    data = WheelData(wheel)
    summary = dict(classes=list(CLASSES), seed=seed, size=size,
                   wheel=osp.basename(wheel), splits={})
    for split_index, split in enumerate(SPLIT_BACKGROUNDS):
        count = counts.get(split, 0)
        if count <= 0:
            continue
        stems = SPLIT_BACKGROUNDS[split]
        backgrounds = [data.load_image(stem) for stem in stems]
        img_dir = osp.join(out_dir, split, 'images')
        ann_dir = osp.join(out_dir, split, 'annfiles')
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        objects = 0
        for i in range(count):
            rng = np.random.default_rng([seed, split_index, i])
            background = _crop(backgrounds[i % len(backgrounds)], size, rng)
            img, corners, labels = draw_scene(background, rng, min_objects,
                                              max_objects)
            name = f'{split}_{i:04d}'
            cv2.imwrite(osp.join(img_dir, name + '.png'), img[..., ::-1])
            write_dota_labels(osp.join(ann_dir, name + '.txt'), corners,
                              labels)
            objects += len(labels)
        summary['splits'][split] = dict(images=count, objects=objects,
                                        backgrounds=list(stems))
        log(f'{split}: {count} images, {objects} objects on '
            f'{", ".join(stems)} -> {osp.join(out_dir, split)}')
    with open(osp.join(out_dir, 'oriented_demo.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary
