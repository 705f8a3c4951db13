"""MMRetinaRegistry (mmretina/utils/checked_registry.py): a typo in an mmretina
type lists our names; a wrong argument names mmretina.<Class> and the
argument. Built through mmdet's registries, as configs do."""
import pytest
from mmdet.registry import DATASETS as MMDET_DATASETS
from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmengine.registry import DefaultScope

import mmretina.deploy  # noqa: F401  (registers ExportedDetector)
from mmretina.registry import DATASETS, HOOKS, MODELS, TASK_UTILS, TRANSFORMS
from mmretina.utils.checked_registry import MMRetinaRegistry


def build(registry, cfg):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return registry.build(cfg)


def test_new_registries_are_children_of_mmdets():
    for ours in (DATASETS, TRANSFORMS, HOOKS, MODELS, TASK_UTILS):
        assert isinstance(ours, MMRetinaRegistry)
        assert ours.scope == 'mmretina'
        assert ours.parent.scope == 'mmdet' and ours.parent.name == ours.name


@pytest.mark.parametrize('registry,name,ours,close', [
    (MMDET_MODELS, 'RetinaHeadd', 'ExportedDetector, FocalLoss, RetinaHead',
     "Did you mean 'mmretina.RetinaHead'?"),
    (MMDET_TASK_UTILS, 'MaxIouAssigner',
     'AnchorGenerator, FakeRotatedAnchorGenerator, MaxIoUAssigner, '
     'RBboxOverlaps2D, TorchvisionAnchorGenerator',
     "Did you mean 'mmretina.MaxIoUAssigner'?"),
    (MMDET_DATASETS, 'Xyz', 'CocoDataset', ''),
    (MMDET_HOOKS, 'CheckFiniteLosHook',
     'CheckFiniteLossHook, NumClassesCheckHook',
     "Did you mean 'mmretina.CheckFiniteLossHook'?"),
])
def test_unknown_mmretina_type_lists_our_names(registry, name, ours, close):
    with pytest.raises(KeyError) as exc:
        build(registry, dict(type=f'mmretina.{name}'))
    msg = exc.value.args[0]
    assert msg.startswith(f"'mmretina.{name}' is not registered in "
                          f"mmretina's {registry.name} registry nor in "
                          "mmdet's.")
    assert close in msg
    assert msg.endswith(f'mmretina {registry.name}s: {ours}.')


def test_mmdet_name_with_our_prefix_is_suggested_without_it():
    with pytest.raises(KeyError) as exc:
        build(MMDET_MODELS, dict(type='mmretina.ResNett'))
    assert "Did you mean 'ResNet' or " in exc.value.args[0]
    assert '(mmdet\'s, written without the "mmretina." prefix)?' in \
        exc.value.args[0]


def test_lookups_that_may_miss_still_answer():
    assert 'Nope' not in MODELS
    assert 'RetinaHead' in MODELS and 'ResNet' in MODELS
    assert MODELS.get('mmdet.Nope') is None  # another scope: mmengine's None
    assert MODELS.get('ResNet').__module__.startswith('mmdet.')


@pytest.mark.parametrize('registry,cfg,message', [
    (MMDET_MODELS,
     dict(type='mmretina.FocalLoss', use_sigmoid=True, gama=2.0, alpah=0.3),
     "mmretina.FocalLoss: unexpected arguments 'gama' (did you mean "
     "'gamma'?), 'alpah' (did you mean 'alpha'?). mmretina.FocalLoss takes: "
     'use_sigmoid, gamma, alpha, reduction, loss_weight, activated.'),
    (MMDET_MODELS,
     dict(type='mmretina.RetinaHead', num_classes=2, in_channels=8, foo=1),
     "mmretina.RetinaHead: unexpected argument 'foo'. mmretina.RetinaHead "
     'takes: num_classes, in_channels, stacked_convs, '),
    (MMDET_MODELS, dict(type='mmretina.RetinaHead', num_classes=2),
     "mmretina.RetinaHead: missing a required argument: 'in_channels'."),
    (MMDET_TASK_UTILS,
     dict(type='mmretina.MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
          pos_iou_thresh=0.6),
     "mmretina.MaxIoUAssigner: unexpected argument 'pos_iou_thresh' (did "
     "you mean 'pos_iou_thr'?)."),
    # **kwargs followed through mmdet's and mmengine's dataset classes
    (MMDET_DATASETS,
     dict(type='mmretina.CocoDataset', ann_file='x.json', filter_cgf={}),
     "mmretina.CocoDataset: unexpected argument 'filter_cgf' (did you mean "
     "'filter_cfg'?). mmretina.CocoDataset takes: check_images, clip_boxes, "),
    (MMDET_HOOKS, dict(type='mmretina.CheckFiniteLossHook', intreval=5),
     "mmretina.CheckFiniteLossHook: unexpected argument 'intreval' (did you "
     "mean 'interval'?). mmretina.CheckFiniteLossHook takes: interval."),
])
def test_wrong_argument_names_module_and_argument(registry, cfg, message):
    with pytest.raises(TypeError) as exc:
        build(registry, cfg)
    assert str(exc.value).startswith(message)


def test_error_inside_a_module_is_not_rewritten():
    # the loss's own TypeError reaches the user through RetinaHead unchanged
    with pytest.raises(TypeError, match=r'^mmretina.FocalLoss: unexpected '
                       r"argument 'gama'"):
        build(
            MMDET_MODELS,
            dict(type='mmretina.RetinaHead', num_classes=2, in_channels=8,
                 loss_cls=dict(type='mmretina.FocalLoss', use_sigmoid=True,
                               gama=1.0)))

    class Bad:

        def __init__(self, x=1):
            raise TypeError('inner problem')

    registry = MMRetinaRegistry('thing', scope='mmretina_test_inner')
    registry.register_module(module=Bad)
    with pytest.raises(TypeError, match='^inner problem$'):
        Bad(x=2)
