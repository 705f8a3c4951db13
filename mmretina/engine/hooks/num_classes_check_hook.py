"""Stop before the first iteration when a head's ``num_classes`` differs from
the number of classes of the training set.

mmdet's ``NumClassCheckHook`` is not in mmdet's default runtime, so a head
with ``num_classes=80`` trains on a one-class dataset without a word: the
79 extra outputs are pushed to background, and the mistake shows only as
odd scores or class names after hours of training. ``num_classes`` smaller
than the data is worse: labels >= ``num_classes`` are treated as
background by the focal loss targets.

``mmretina.NumClassesCheckHook`` reuses mmdet's hook (same checks, same
exclusions: ``rpn_head`` and VGG backbones, whose ``num_classes`` are not
the dataset's) but runs them in ``before_train`` -- once, before any
iteration, for epoch- and iteration-based loops alike -- and raises a
``ValueError`` that names both numbers and the two places to set them,
instead of an ``AssertionError``. Listing it twice, or beside mmdet's hook,
is harmless: each instance checks once per run.
"""
from typing import List, Optional, Sequence, Tuple

from mmcv.cnn import VGG
from mmdet.engine.hooks import NumClassCheckHook
from mmengine.model import is_model_wrapper
from torch import nn

from ...registry import HOOKS

__all__ = ['NumClassesCheckHook', 'num_classes_mismatches']


def _heads_with_num_classes(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, module)`` of every module with an int ``num_classes`` that
    should equal the dataset's class count (mmdet's exclusions)."""
    from mmdet.models.roi_heads.mask_heads import FusedSemanticHead
    out = []
    for name, module in model.named_modules():
        num = getattr(module, 'num_classes', None)
        if not isinstance(num, int) or isinstance(num, bool):
            continue
        if name.endswith('rpn_head') or isinstance(module,
                                                   (VGG, FusedSemanticHead)):
            continue
        out.append((name or type(module).__name__, module))
    return out


def num_classes_mismatches(model: nn.Module,
                           classes: Sequence[str]) -> List[str]:
    """Names (``model.<name>``) and ``num_classes`` of the modules of
    ``model`` (wrappers such as DDP unwrapped) whose ``num_classes`` is not
    ``len(classes)``, as ``'model.bbox_head.num_classes=3 (RetinaHead)'``."""
    if is_model_wrapper(model):
        model = model.module
    return [
        f'model.{name}.num_classes={module.num_classes} '
        f'({type(module).__name__})'
        for name, module in _heads_with_num_classes(model)
        if module.num_classes != len(classes)
    ]


@HOOKS.register_module()
class NumClassesCheckHook(NumClassCheckHook):
    """Raise ``ValueError`` before training when ``num_classes`` of a head
    (``model.bbox_head`` and any other module with ``num_classes``, DDP
    wrappers unwrapped) is not ``len(metainfo['classes'])`` of
    ``train_dataloader.dataset``; the validation set is checked at its
    first epoch the same way.

    Args:
        check_val (bool): also check the validation dataset (before the
            first validation). Defaults to True.

    A ``classes`` given as a string (``classes=('tree')`` without the comma)
    is an error too; a dataset without ``classes`` in its metainfo is
    logged as a warning (as mmdet does) and not checked.
    """

    priority = 'VERY_HIGH'

    def __init__(self, check_val: bool = True) -> None:
        self.check_val = check_val
        self._checked = set()

    def before_train(self, runner) -> None:
        self._check(runner, 'train')

    def before_train_epoch(self, runner) -> None:
        # mmdet's hook checks here, each epoch; before_train covers it.
        pass

    def before_val_epoch(self, runner) -> None:
        if self.check_val:
            self._check(runner, 'val')

    def _check_head(self, runner, mode: str) -> None:
        # mmdet's entry point, kept for callers of the parent's API
        self._check(runner, mode)

    def _check(self, runner, mode: str) -> None:
        if mode in self._checked:
            return
        self._checked.add(mode)
        loader = (runner.train_dataloader
                  if mode == 'train' else runner.val_dataloader)
        dataset = loader.dataset
        where = f'{mode}_dataloader.dataset'
        classes = _dataset_classes(dataset)
        if classes is None:
            runner.logger.warning(
                f'NumClassesCheckHook: {where} ({type(dataset).__name__}) '
                "has no metainfo['classes']; set metainfo=dict(classes=(...)) "
                'in its config so that model.bbox_head.num_classes can be '
                'checked against it.')
            return
        if isinstance(classes, str):
            raise ValueError(
                f"{where}.metainfo['classes'] is the string {classes!r}, not "
                f"a tuple of names: write classes=({classes!r}, ) (the "
                'comma makes a one-element tuple).')
        bad = num_classes_mismatches(runner.model, classes)
        if bad:
            shown = repr(tuple(classes)) if len(classes) <= 10 else (
                repr(tuple(classes[:10]))[:-1] + ', ...)')
            raise ValueError(
                f'{", ".join(bad)} but {where} '
                f'({type(dataset).__name__}) has {len(classes)} '
                f"class{'es' if len(classes) != 1 else ''} "
                f"(metainfo['classes'] = {shown}). Set "
                f'model.bbox_head.num_classes={len(classes)} in the config, '
                'or list the classes of your data in the dataset config: '
                'metainfo=dict(classes=(...)) of train_dataloader.dataset '
                '(and of val/test). Stopped before the first iteration; '
                'mmdet would train on with the wrong number of outputs.')


def _dataset_classes(dataset) -> Optional[Sequence[str]]:
    metainfo = getattr(dataset, 'metainfo', None) or {}
    return metainfo.get('classes', None)
