# Sec. 5.1 "Network Initialization": the focal loss (gamma = 2,
# alpha = 0.25) without the prior (bias 0, p = 0.5 at every anchor at the
# start), to separate what the loss and what the initialisation do.
_base_ = '../../retinanet_r18_fpn_deepforest_320px_200e.py'
model = dict(
    bbox_head=dict(
        loss_cls=dict(gamma=2.0, alpha=0.25),
        init_cfg=dict(
            type='Normal', layer='Conv2d', std=0.01)))
