"""tools/train.py and tools/test.py on mmrotate-scoped configs (issue 29):
:func:`mmretina.cli.train.require_for_config` registers mmrotate's
modules before the Runner for such configs, and only for them."""
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmretina.utils.mmrotate import require_for_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ROTATED = osp.join(REPO, 'configs', 'rotated')

pytest.importorskip('mmrotate')


def test_mmdet_config_does_not_need_mmrotate():
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'retinanet_r18_fpn_deepforest.py'))
    assert require_for_config(cfg) is False


@pytest.mark.parametrize('name', [
    'rotated_retinanet_r50_fpn_1x_dota_le90.py',
    'rotated_retinanet_r50_fpn_1x_dota_oc.py',
    'rotated_retinanet_r18_fpn_oriented_demo.py',
    'retinanet_r18_fpn_oriented_demo_hbox.py'
])
def test_rotated_configs_need_mmrotate(name):
    cfg = Config.fromfile(osp.join(ROTATED, name))
    assert require_for_config(cfg) is True


def test_a_scope_named_only_inside_the_model_counts():
    cfg = Config(dict(
        default_scope='mmdet',
        model=dict(type='RetinaNet',
                   bbox_head=dict(type='mmrotate.RotatedRetinaHead'))))
    assert require_for_config(cfg) is True
    cfg = Config(dict(model=dict(type='RetinaNet', _scope_='mmrotate')))
    assert require_for_config(cfg) is True


@pytest.mark.parametrize('register', [True, False])
def test_runner_builds_from_a_fresh_process(tmp_path, register):
    """In a process that has imported nothing of mmrotate, the tools' path
    (config -> require_for_config -> Runner) builds mmrotate's le90
    config with mmretina's modules; without the call, mmengine's own import
    of mmrotate.models meets torchvision (where it does not import, as
    here) and fails."""
    code = f'''
from mmengine.config import Config
from mmengine.runner import Runner
from mmretina.utils.mmrotate import require_for_config
cfg = Config.fromfile({osp.join(ROTATED,
                     'rotated_retinanet_r50_fpn_1x_dota_le90.py')!r})
cfg.model.backbone.init_cfg = None
cfg.work_dir = {str(tmp_path)!r}
if {register}:
    assert require_for_config(cfg)
runner = Runner.from_cfg(cfg)
print(type(runner.model.bbox_head).__module__,
      type(runner.model.bbox_head.prior_generator).__module__)
'''
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    if not register:
        try:
            import torchvision  # noqa: F401
        except Exception:
            assert out.returncode != 0
            assert 'torchvision' in out.stderr
            return
        pytest.skip('torchvision imports here: the call is not needed')
    assert out.returncode == 0, out.stderr[-3000:]
    head, anchors = out.stdout.split()[-2:]
    assert head.startswith('mmretina.')
    assert anchors.startswith('mmretina.')
