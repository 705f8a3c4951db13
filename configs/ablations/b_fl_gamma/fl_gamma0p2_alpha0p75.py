# Table 1b: focal loss with gamma = 0.2 and the alpha the paper found best
# for it (0.75). Everything else is the DeepForest demo recipe.
_base_ = '../../retinanet_r18_fpn_deepforest_320px_200e.py'
model = dict(bbox_head=dict(loss_cls=dict(gamma=0.2, alpha=0.75)))
