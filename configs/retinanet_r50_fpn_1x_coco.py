# RetinaNet R-50-FPN with mmdet's 12-epoch ("1x") schedule, the setting of
# mmdet's configs/retinanet/retinanet_r50_fpn_1x_coco.py (lr 0.01 at batch 16).
_base_ = [
    './_base_/models/retinanet_r50_fpn.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/schedule_1x.py',
    './_base_/default_runtime.py',
]

# optimizer
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
