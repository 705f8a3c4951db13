"""Registries of scope ``mmretina``, children of mmdet's.

After ``import mmretina`` (or ``custom_imports=dict(imports=['mmretina'])``),
``type='mmretina.RetinaHead'`` resolves here from any mmdet config, while
names we do not define (``ResNet``, ``FPN``, ``DeltaXYWHBBoxCoder``, ...) fall
through to mmdet. We never register over mmdet's own names.

``MMRetinaRegistry`` is mmengine's ``Registry`` whose errors list our names
on a typo and name ``mmretina.<Class>`` and the argument on a wrong keyword
(see ``mmretina/utils/checked_registry.py``).

mmengine resolves a prefixed type (``mmretina.RetinaHead``) from another
scope only among the root registry's direct children. Ours are children of
mmdet's, so from a sibling of mmdet (mmrotate, mmyolo) the lookup would fail;
each registry is therefore also indexed under the root by its scope
(:func:`_index_under_root`), its parent staying mmdet's.
"""
from mmdet.registry import DATASETS as MMDET_DATASETS
from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import METRICS as MMDET_METRICS
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import OPTIM_WRAPPERS as MMDET_OPTIM_WRAPPERS
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmdet.registry import TRANSFORMS as MMDET_TRANSFORMS

from .utils.checked_registry import MMRetinaRegistry

MODELS = MMRetinaRegistry(
    'model',
    parent=MMDET_MODELS,
    scope='mmretina',
    locations=['mmretina.models'])
TASK_UTILS = MMRetinaRegistry(
    'task util',
    parent=MMDET_TASK_UTILS,
    scope='mmretina',
    locations=['mmretina.models'])
DATASETS = MMRetinaRegistry(
    'dataset',
    parent=MMDET_DATASETS,
    scope='mmretina',
    locations=['mmretina.datasets'])
TRANSFORMS = MMRetinaRegistry(
    'transform',
    parent=MMDET_TRANSFORMS,
    scope='mmretina',
    locations=['mmretina.datasets.transforms'])
HOOKS = MMRetinaRegistry(
    'hook',
    parent=MMDET_HOOKS,
    scope='mmretina',
    locations=['mmretina.engine.hooks'])
OPTIM_WRAPPERS = MMRetinaRegistry(
    'optim_wrapper',
    parent=MMDET_OPTIM_WRAPPERS,
    scope='mmretina',
    locations=['mmretina.engine.optimizers'])
# mmretina.DOTAMetric (needs the rotated extra: imported on first use)
METRICS = MMRetinaRegistry(
    'metric',
    parent=MMDET_METRICS,
    scope='mmretina',
    locations=['mmretina.evaluation.dota'])


def _index_under_root(registry) -> None:
    """Make ``mmretina.<Name>`` resolve from every scope: the root registry
    looks a prefixed key up in its ``_children`` by scope, so ours is added
    there too (its parent, hence the fall-through to mmdet, is unchanged)."""
    root = registry.parent
    while root.parent is not None:
        root = root.parent
    root._children.setdefault(registry.scope, registry)


for _registry in (MODELS, TASK_UTILS, DATASETS, TRANSFORMS, HOOKS,
                  OPTIM_WRAPPERS, METRICS):
    _index_under_root(_registry)
