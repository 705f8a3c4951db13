# Table 1a: alpha-balanced cross-entropy (the focal loss with gamma = 0),
# alpha = 0.10. Everything else is the DeepForest demo recipe.
_base_ = '../../retinanet_r18_fpn_deepforest_320px_200e.py'
model = dict(bbox_head=dict(loss_cls=dict(gamma=0.0, alpha=0.10)))
