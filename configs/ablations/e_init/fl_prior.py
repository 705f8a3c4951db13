# Sec. 5.1 "Network Initialization", reference: the focal loss (gamma = 2,
# alpha = 0.25) with the prior initialisation (pi = 0.01), i.e. the demo.
_base_ = '../../retinanet_r18_fpn_deepforest_320px_200e.py'
model = dict(bbox_head=dict(loss_cls=dict(gamma=2.0, alpha=0.25)))
