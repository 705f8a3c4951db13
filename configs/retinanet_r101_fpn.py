# RetinaNet R-101-FPN, the paper's 90k-iteration schedule.
_base_ = './retinanet_r50_fpn.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            type='Pretrained', checkpoint='torchvision://resnet101')))
