# mmrotate-dev's own rotated RetinaNet (oc, R-50 FPN, DOTA-v1.0 1x:
# 64.55 mAP in mmrotate's README) with mmretina's four modules in place of
# mmdet's and mmrotate's: the head, the focal loss, the rotated anchor
# generator and the assigner (RBboxOverlaps2D kept: rotated IoU, computed
# only where an anchor and an object can overlap). Same anchors, targets,
# losses and detections as mmrotate's (tests/models/rotated/); mmrotate
# checkpoints load with strict=True. Needs the rotated extra
# (requirements/rotated.txt); tools/train.py and tools/test.py register
# mmrotate's modules for its scope.
_base_ = 'mmrotate::rotated_retinanet/rotated-retinanet-rbox-oc_r50_fpn_1x_dota.py'  # noqa: E501

custom_imports = dict(imports=['mmretina'], allow_failed_imports=False)

model = dict(
    bbox_head=dict(
        type='mmretina.RetinaHead',
        anchor_generator=dict(type='mmretina.FakeRotatedAnchorGenerator'),
        loss_cls=dict(type='mmretina.FocalLoss')),
    train_cfg=dict(assigner=dict(type='mmretina.MaxIoUAssigner')))
