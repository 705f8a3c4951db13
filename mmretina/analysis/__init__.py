"""Analysis tools as a library: anchors against the training boxes
(:mod:`.anchors`), training logs (:mod:`.logs`), ablation runs
(:mod:`.ablations`) and the loss distribution (:mod:`.loss_distribution`).
Submodules are imported on use (they pull in matplotlib or the model)."""
