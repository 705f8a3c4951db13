"""One rank of a distributed run fails: the whole job ends, quickly, with
the failing rank's message and no NaN checkpoint.

Measured as a user runs it: ``tools/dist_train.sh CONFIG 2`` (torchrun, two
gloo CPU processes) on the tiny config, where a hook turns rank 1's
classification head NaN before iteration 3. mmretina.RetinaHead raises on
rank 1; rank 0, waiting in the gradient all-reduce, loses its peer; torchrun
stops the job."""
import glob
import os.path as osp
import subprocess
import sys
import time

import torch

PLUGIN = '''
import math
import time

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class NaNOnRankOneHook(Hook):
    """Fill rank 1's classification weights with NaN before iteration 3."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if get_rank() == 1 and runner.iter == 2:
            model = getattr(runner.model, 'module', runner.model)
            model.bbox_head.retina_cls.weight.data.fill_(math.nan)
            with open({stamp!r}, 'w') as f:
                f.write(repr(time.time()))
'''


def test_failing_rank_ends_the_whole_job(tmp_path, tiny_data, tools_helpers):
    h = tools_helpers
    stamp = str(tmp_path / 'nan_injected_at')
    (tmp_path / 'nan_plugin.py').write_text(PLUGIN.format(stamp=stamp))
    base = h.write_tiny_config(
        str(tmp_path / 'tiny.py'), tiny_data, max_iters=6, ckpt_interval=1)
    config = str(tmp_path / 'dist_nan_retinanet.py')
    with open(config, 'w') as f:
        f.write(f"_base_ = [{base!r}]\n"
                "custom_imports = dict(imports=['mmretina', 'nan_plugin'])\n"
                "custom_hooks = [dict(type='NaNOnRankOneHook')]\n")
    work_dir = tmp_path / 'work'
    env = h.tool_env()
    env['PYTHONPATH'] = str(tmp_path) + ':' + env['PYTHONPATH']
    env['PORT'] = str(h.free_port())
    env['PYTHON'] = sys.executable
    start = time.time()
    proc = h.run_tool([
        'bash', osp.join(h.TOOLS, 'dist_train.sh'), config, '2',
        '--work-dir', str(work_dir), '--cfg-options', 'val_cfg=None',
        'val_dataloader=None', 'val_evaluator=None'
    ], env=env, timeout=240)
    end = time.time()
    out = proc.stdout
    assert proc.returncode != 0, out[-6000:]
    assert osp.isfile(stamp), out[-6000:]  # the failure did happen
    injected = float(open(stamp).read())
    print(f'job ended {end - injected:.1f} s after the NaN '
          f'({end - start:.1f} s in all)')
    assert end - injected < 60, out[-6000:]
    # the failing rank's own message
    assert 'mmretina.RetinaHead: the classification scores of level' in out
    assert 'iteration 3:' in out
    # every process has exited (torchrun stops the healthy rank)
    left = subprocess.run(['pgrep', '-f', 'dist_nan_retinanet.py'],
                          capture_output=True, text=True)
    assert left.stdout.strip() == '', left.stdout
    # checkpoints of iterations 1 and 2 exist and none holds NaN weights
    from mmretina.engine.checkpoint import load_checkpoint_file
    ckpts = sorted(glob.glob(str(work_dir / 'iter_*.pth')))
    assert [osp.basename(c) for c in ckpts] == ['iter_1.pth', 'iter_2.pth']
    for path in ckpts:
        state = load_checkpoint_file(path, map_location='cpu')['state_dict']
        assert all(bool(torch.isfinite(v).all()) for v in state.values()
                   if v.is_floating_point()), path
