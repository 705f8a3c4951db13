"""A run's record in ``out_dir/.mmretina``: what lets a killed run resume
at the windows it had not finished, and a rerun with other output options
re-write the outputs without the model.

Keyed by a fingerprint of what determines the detections
(:func:`fingerprint`):

* per input still running, ``<name>.<fingerprint>.parts/``: one ``.npz`` per
  batch of windows (the windows it accounts for, nodata ones included, and
  their detections in the windows' pixels, boxes M x 4 or rotated M x 5),
  written whole and renamed;
* per finished input, ``<name>.npz`` (its merged detections in the
  raster's pixels, classes, georeferencing) and ``<name>.preview.png``
  (the image its PNG is drawn on).
"""
import glob
import hashlib
import json
import os
import os.path as osp
import shutil
import uuid
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from mmengine.structures import InstanceData

from mmretina.inference.tiled import box_tensor

__all__ = ['fingerprint', 'RunRecord', 'as_arrays', 'as_instance']


def fingerprint(settings: dict) -> str:
    """16 hex digits of what determines the detections."""
    return hashlib.sha1(
        json.dumps(settings, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


def as_arrays(inst: InstanceData
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bboxes M x 4 float32, or M x 5 rotated (cx, cy, w, h, angle);
    scores (M,) float32; labels (M,) int64)."""
    bboxes = box_tensor(inst.bboxes)
    if bboxes.dim() != 2:  # an empty (0,) tensor
        bboxes = bboxes.reshape(-1, 4)
    return (bboxes.numpy(),
            torch.as_tensor(inst.scores).float().cpu().numpy(),
            torch.as_tensor(inst.labels).long().cpu().numpy())


def as_instance(bboxes, scores, labels) -> InstanceData:
    inst = InstanceData()
    inst.bboxes = torch.as_tensor(bboxes)
    inst.scores = torch.as_tensor(scores)
    inst.labels = torch.as_tensor(labels)
    return inst


class RunRecord:
    """The record of one run's settings in ``state_dir``.

    Args:
        state_dir (str): ``out_dir/.mmretina``.
        fingerprint (str): :func:`fingerprint` of the run's settings.
        rank (int): this process's rank (parts are named by it).
    """

    def __init__(self, state_dir: str, fingerprint: str,
                 rank: int = 0) -> None:
        self.state_dir, self.fingerprint, self.rank = (state_dir,
                                                       fingerprint, rank)

    def record_path(self, path: str) -> str:
        return osp.join(self.state_dir, osp.basename(path) + '.npz')

    def parts_dir(self, path: str) -> str:
        return osp.join(self.state_dir,
                        f'{osp.basename(path)}.{self.fingerprint}.parts')

    def load(self, path: str) -> Optional[dict]:
        """The finished record of ``path`` with these settings, or None."""
        rec = self.record_path(path)
        if not osp.isfile(rec):
            return None
        try:
            with np.load(rec, allow_pickle=False) as z:
                if str(z['fingerprint']) != self.fingerprint:
                    return None
                georef = None
                if z['transform'].size:
                    from mmretina.geo.raster import Georef
                    wkt = str(z['crs_wkt'])
                    georef = Georef(tuple(float(v) for v in z['transform']),
                                    wkt or None)
                meta = json.loads(str(z['meta'])) if 'meta' in z else {}
                return dict(image_path=path, bboxes=z['bboxes'],
                            scores=z['scores'], labels=z['labels'],
                            georef=georef, meta=meta)
        except Exception:  # a record from an older version, or damaged
            return None

    def save(self, res: dict, meta: dict, preview=None) -> None:
        """Record a finished input (and its preview image, BGR)."""
        rec = self.record_path(res['image_path'])
        os.makedirs(osp.dirname(rec), exist_ok=True)
        g = res['georef']
        tmp = rec + f'.tmp{os.getpid()}.npz'
        np.savez(tmp, bboxes=res['bboxes'], scores=res['scores'],
                 labels=res['labels'], fingerprint=self.fingerprint,
                 transform=np.array(g.transform if g else [], float),
                 crs_wkt=(g.crs_wkt or '') if g else '',
                 meta=json.dumps(meta))
        os.replace(tmp, rec)
        if preview is not None:
            import cv2
            cv2.imwrite(self.preview_path(res['image_path']), preview,
                        [cv2.IMWRITE_PNG_COMPRESSION, 1])

    def preview_path(self, path: str) -> str:
        return self.record_path(path)[:-4] + '.preview.png'

    def clear_parts(self, path: str) -> None:
        shutil.rmtree(self.parts_dir(path), ignore_errors=True)

    def part_writer(self, path: str) -> Callable:
        """on_batch callback of :func:`detect_windows`: one file per batch
        in the input's parts folder (written whole, then renamed)."""
        folder = self.parts_dir(path)
        os.makedirs(folder, exist_ok=True)
        count = [0]
        run_id = uuid.uuid4().hex[:8]  # parts of earlier runs are kept

        def write(covered: List[int], done: Dict[int, InstanceData]) -> None:
            ids = sorted(done)
            arrays = [as_arrays(done[i]) for i in ids]
            name = osp.join(folder, f'r{self.rank}-{run_id}-'
                            f'{count[0]:07d}.npz')
            count[0] += 1
            np.savez(name + '.tmp.npz',
                     covered=np.asarray(covered, np.int64),
                     ids=np.asarray(ids, np.int64),
                     counts=np.asarray([len(a[1]) for a in arrays], np.int64),
                     bboxes=np.concatenate([a[0] for a in arrays])
                     if arrays else np.zeros((0, 4), np.float32),
                     scores=np.concatenate([a[1] for a in arrays])
                     if arrays else np.zeros(0, np.float32),
                     labels=np.concatenate([a[2] for a in arrays])
                     if arrays else np.zeros(0, np.int64))
            os.replace(name + '.tmp.npz', name)

        return write

    def parts(self, path: str) -> Tuple[set, Dict[int, InstanceData]]:
        """(window ids recorded, their detections) of an input's parts."""
        covered, per_window = set(), {}
        for name in sorted(glob.glob(osp.join(self.parts_dir(path),
                                              '*[0-9].npz'))):
            try:
                with np.load(name, allow_pickle=False) as z:
                    part = {k: z[k] for k in z.files}
            except Exception:  # cut short by a kill: its windows run again
                continue
            starts = np.concatenate([[0], np.cumsum(part['counts'])])
            for k, i in enumerate(part['ids']):
                s, e = starts[k], starts[k + 1]
                per_window[int(i)] = as_instance(part['bboxes'][s:e],
                                               part['scores'][s:e],
                                               part['labels'][s:e])
            covered.update(int(i) for i in part['covered'])
        return covered, per_window
