"""A user config on one of mmdet's own configs (``mmdet::`` base), with
``type='mmretina.RetinaHead'``, builds and trains through tools/train.py.

This is how most mmdet users write a config; mmengine resolves ``mmdet::``
through ``pkg_resources``, which setuptools 82+ no longer ships (the
install path holds setuptools < 82)."""
import os.path as osp

USER_CONFIG = '''
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmretina'], allow_failed_imports=False)

model = dict(
    # no ImageNet weights offline
    backbone=dict(init_cfg=None),
    bbox_head=dict(type='mmretina.RetinaHead', num_classes=2))

data_root = {data_root!r}
metainfo = dict(classes={classes!r})
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='ann.json',
                 data_prefix=dict(img='images/')))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='ann.json',
                 data_prefix=dict(img='images/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'ann.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1)
'''


def test_config_on_mmdet_base_trains_with_mmretina_head(
        tmp_path, tiny_data, tools_helpers):
    import pkg_resources  # noqa: F401  (what mmdet:: bases need)
    from mmengine.config import Config
    cfg_file = tmp_path / 'retinanet_user.py'
    cfg_file.write_text(
        USER_CONFIG.format(data_root=tiny_data.rstrip('/') + '/',
                           classes=tools_helpers.CLASSES))
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.bbox_head.type == 'mmretina.RetinaHead'
    assert cfg.model.bbox_head.anchor_generator.type == 'AnchorGenerator'
    work = tmp_path / 'work'
    # 128 px images instead of 1333 x 800: the test is about the config
    # path, not the scale
    out = tools_helpers.python_tool(
        'train.py', cfg_file, '--work-dir', work, '--cfg-options',
        'train_dataloader.dataset.pipeline.2.scale=(128,128)',
        'val_dataloader.dataset.pipeline.1.scale=(128,128)',
        'test_dataloader.dataset.pipeline.1.scale=(128,128)', timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
    # the config had no finite-loss guard: tools/train.py added it, and said
    assert 'added mmretina.CheckFiniteLossHook' in out.stdout
    assert 'Epoch(train) [1][4/4]' in out.stdout
    assert osp.isfile(work / 'epoch_1.pth')
