"""What the training pipeline does to the size and place of each box,
asked of the pipeline's own transforms.

:func:`geometry` builds the geometric transforms of a pipeline config
(``Resize``, ``RandomResize``, ``RandomChoiceResize``, 90-degree ``Rotate``,
``FilterAnnotations``) with mmdet's registry -- the same classes, with the
same arguments, that training runs, so the sizes come from mmcv's own
arithmetic (``mmcv.rescale_size`` and the transforms' scale sampling) -- and
runs them on a blank single-channel image of the annotated size with the
image's boxes. Photometric transforms, crops and mixes are not applied; the
report says so, transform by transform.
"""
import math
from typing import Callable, List, Sequence, Tuple

import numpy as np

__all__ = ['PHOTOMETRIC', 'PASSIVE', 'NO_SIZE_CHANGE', 'CROPS', 'geometry',
           'transformed_images', 'transformed_boxes', 'stack_boxes']

# transforms that change colours only: not applied, said so
PHOTOMETRIC = {
    'PhotoMetricDistortion', 'ColorTransform', 'Brightness', 'Contrast',
    'Sharpness', 'Color', 'Equalize', 'AutoContrast', 'Invert', 'Posterize',
    'Solarize', 'SolarizeAdd', 'RandomGaussianBlur', 'MatchImageStats',
    'YOLOXHSVRandomAug', 'Normalize', 'RandomGrayscale', 'CutOut',
    'RandomErasing', 'GaussianBlur',
}
PASSIVE = {'LoadImageFromFile', 'LoadAnnotations', 'PackDetInputs', 'Pad',
           'LoadImageFromNDArray', 'ToTensor', 'ImageToTensor'}
NO_SIZE_CHANGE = {'RandomFlip', 'Flip'}
CROPS = {'RandomCrop', 'RandomCenterCropPad', 'MinIoURandomCrop', 'Mosaic',
         'MixUp', 'RandomAffine', 'Expand', 'CopyPaste', 'CachedMosaic',
         'CachedMixUp', 'RandomShift', 'Translate', 'Shear'}

# (w, h, boxes (n, 4) float32 xyxy, rng) -> (w, h, boxes)
Step = Callable[[int, int, np.ndarray, np.random.RandomState],
                Tuple[int, int, np.ndarray]]


def _short(type_name) -> str:
    name = type_name if isinstance(type_name, str) else type_name.__name__
    return name.split('.')[-1]


def _pair(x):
    return (x, x) if np.isscalar(x) else tuple(x)


def transform_step(cfg: dict) -> Step:
    """A step that runs the transform ``cfg`` (built with mmdet's registry)
    on a blank ``h x w`` image and the boxes.

    Random draws come from ``rng``: numpy's global generator, which mmcv's
    transforms sample from, is seeded from it for the call and restored
    after.
    """
    from mmdet.registry import TRANSFORMS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    transform = TRANSFORMS.build(dict(cfg))

    def step(w, h, boxes, rng):
        n = len(boxes)
        results = dict(
            img=np.zeros((h, w), np.uint8), img_shape=(h, w),
            ori_shape=(h, w), gt_bboxes=np.array(boxes, np.float32),
            gt_bboxes_labels=np.zeros(n, np.int64),
            gt_ignore_flags=np.zeros(n, bool))
        state = np.random.get_state()
        np.random.seed(rng.randint(2**31 - 1))
        try:
            out = transform(results)
        finally:
            np.random.set_state(state)
        if out is None:  # FilterAnnotations left no box (keep_empty)
            return w, h, np.zeros((0, 4), np.float32)
        nh, nw = out['img'].shape[:2]
        return nw, nh, np.asarray(out['gt_bboxes'],
                                  np.float32).reshape(-1, 4)

    return step


def geometry(pipeline: Sequence[dict]) -> Tuple[List[Step], List[str]]:
    """(steps, report): the box-size-changing transforms of the pipeline as
    :func:`transform_step` s, and one line per transform saying what was
    done with it."""
    steps, report = [], []
    for t in pipeline:
        name = _short(t.get('type', '?'))
        if name in PASSIVE:
            continue
        if name == 'Resize':
            if t.get('scale') is not None:
                what = f'scale={tuple(_pair(t["scale"]))}'
            elif t.get('scale_factor') is not None:
                what = f'scale_factor={t["scale_factor"]}'
            else:
                report.append(f'{name}: no scale -- not applied')
                continue
            steps.append(transform_step(t))
            report.append(f'{name}({what}, keep_ratio='
                          f'{t.get("keep_ratio", False)}): applied')
        elif name == 'RandomResize':
            scale, ratio_range = t['scale'], t.get('ratio_range')
            what = (f'scale={tuple(_pair(scale))}, ratio_range='
                    f'{tuple(ratio_range)}' if ratio_range is not None else
                    f'scale={list(scale)}')
            steps.append(transform_step(t))
            report.append(f'{name}({what}, keep_ratio='
                          f'{t.get("keep_ratio", False)}): applied, a random '
                          'scale per image')
        elif name == 'RandomChoiceResize':
            steps.append(transform_step(t))
            report.append(f'{name}({len(t["scales"])} scales, keep_ratio='
                          f'{t.get("keep_ratio", False)}): applied, a random '
                          'choice per image')
        elif name == 'Rotate' and t.get('min_mag') == t.get('max_mag') == 90:
            steps.append(transform_step(t))
            report.append(f'{name}(90 degrees, prob={t.get("prob", 0.5)}): '
                          'applied (width and height swap)')
        elif name == 'FilterAnnotations':
            steps.append(transform_step(t))
            min_wh = _pair(t.get('min_gt_bbox_wh', (1, 1)))
            report.append(f'{name}(min_gt_bbox_wh={tuple(min_wh)}): applied')
        elif name in NO_SIZE_CHANGE:
            report.append(f'{name}: does not change box sizes -- not needed')
        elif name in PHOTOMETRIC:
            report.append(f'{name}: photometric -- not applied')
        elif name in CROPS:
            report.append(f'{name}: crop / mix / affine -- not applied '
                          '(boxes are analysed whole)')
        else:
            report.append(f'{name}: unknown to this tool -- not applied')
    return steps, report


def transformed_images(images, steps: Sequence[Step], seed: int = 0
                       ) -> List[Tuple[int, int, np.ndarray]]:
    """``[(w, h, boxes)]`` of each image after ``steps``; boxes (n, 4)
    float32 xyxy in the transformed image's pixels, those without area
    dropped. Random steps draw from ``RandomState(seed)``, image by image.
    """
    rng = np.random.RandomState(seed)
    out = []
    for w, h, boxes in images:
        for step in steps:
            w, h, boxes = step(w, h, boxes, rng)
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out.append((w, h, boxes[ok]))
    return out


def transformed_boxes(images, steps: Sequence[Step], divisor: int,
                      seed: int = 0):
    """:func:`stack_boxes` of :func:`transformed_images`."""
    return stack_boxes(transformed_images(images, steps, seed), divisor)


def stack_boxes(images, divisor: int):
    """The boxes of all ``(w, h, boxes)`` images together.

    Returns:
        tuple: boxes (N, 4) float32 xyxy; the padded (h, w) of each box's
        image (padded to a multiple of ``divisor`` as the data
        preprocessor does), (N, 2) int; the index of each box's image,
        (N,) int.
    """
    all_boxes, all_pad, all_index = [], [], []
    for i, (w, h, boxes) in enumerate(images):
        ph = int(math.ceil(h / divisor) * divisor)
        pw = int(math.ceil(w / divisor) * divisor)
        all_boxes.append(boxes)
        all_pad.append(np.tile([[ph, pw]], (len(boxes), 1)))
        all_index.append(np.full(len(boxes), i))
    if not all_boxes:
        return (np.zeros((0, 4), np.float32), np.zeros((0, 2), np.int64),
                np.zeros(0, np.int64))
    return (np.concatenate(all_boxes).astype(np.float32),
            np.concatenate(all_pad).astype(np.int64),
            np.concatenate(all_index).astype(np.int64))
