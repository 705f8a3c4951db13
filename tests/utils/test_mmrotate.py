"""The guard of the rotated extra: which configs need mmrotate, and
mmrotate's models registered without a working torchvision."""
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmretina.utils.mmrotate import (require_for_config, require_mmrotate,
                                     uses_mmrotate)


@pytest.mark.parametrize('cfg, needs', [
    (dict(default_scope='mmrotate'), True),
    (dict(model=dict(type='mmdet.RetinaNet', bbox_head=dict(
        anchor_generator=dict(type='mmrotate.FakeRotatedAnchorGenerator')))),
     True),
    (dict(model=[dict(_scope_='mmrotate', type='X')]), True),
    (dict(default_scope='mmdet', model=dict(type='RetinaNet')), False),
    (dict(model=dict(type='mmretina.RetinaHead')), False),
])
def test_uses_mmrotate(cfg, needs):
    assert uses_mmrotate(Config(cfg)) is needs
    assert require_for_config(Config(cfg)) is needs


def test_models_register_without_torchvision():
    """In a fresh process where torchvision cannot import, mmrotate's
    modules register; the placeholder is gone afterwards and H2RBox-v2's
    use of it says why it fails."""
    code = '''
import sys
sys.modules['torchvision'] = None  # import torchvision -> ImportError
from mmretina.utils.mmrotate import require_mmrotate
require_mmrotate()
assert sys.modules.get('torchvision') is None, sys.modules.get('torchvision')
from mmrotate.registry import TASK_UTILS
assert TASK_UTILS.get('DeltaXYWHTRBBoxCoder') is not None
import mmrotate.models.detectors.h2rbox_v2 as h
try:
    h.transforms.RandomRotation
except ImportError as e:
    print('ImportError:', e)
'''
    try:
        require_mmrotate(models=False)
    except ImportError as e:
        pytest.skip(str(e))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'torchvision does not import in this environment' in out.stdout
