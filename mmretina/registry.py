"""Registries of scope ``mmretina``, children of mmdet's.

After ``import mmretina`` (or ``custom_imports=dict(imports=['mmretina'])``),
``type='mmretina.RetinaHead'`` resolves here from any mmdet config, while
names we do not define (``ResNet``, ``FPN``, ``DeltaXYWHBBoxCoder``, ...) fall
through to mmdet. We never register over mmdet's own names.
"""
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMDET_MODELS, scope='mmretina', locations=['mmretina.models'])
TASK_UTILS = Registry(
    'task util',
    parent=MMDET_TASK_UTILS,
    scope='mmretina',
    locations=['mmretina.models'])
