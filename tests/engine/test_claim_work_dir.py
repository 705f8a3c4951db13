"""mmretina.engine.resume.claim_work_dir (tools/claim_work_dir.py): the
guard in tools/run_demo.sh that keeps
``--resume`` from continuing a run of another config."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from mmretina.engine import resume
from mmretina.engine.resume import HASH_FILE, claim_work_dir, config_hash

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO_ROOT, 'tools')
# the tool imports mmretina: this checkout's, as tools/dist_train.sh does
ENV = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep
           + os.environ.get('PYTHONPATH', ''))

CONFIG_A = '''
model = dict(type='RetinaNet', lr={lr})
train_cfg = dict(max_epochs=2)
'''


def write_config(path, lr=0.01):
    with open(path, 'w') as f:
        f.write(CONFIG_A.format(lr=lr))
    return str(path)


def fake_run(work_dir, stamp=None):
    """A work dir as tools/train.py leaves it: a checkpoint and its pointer
    (and, when claimed before, the config stamp)."""
    os.makedirs(work_dir, exist_ok=True)
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    open(ckpt, 'wb').close()
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(ckpt)
    if stamp is not None:
        with open(osp.join(work_dir, HASH_FILE), 'w') as f:
            f.write(stamp + '\n')


def siblings(tmp_path, name):
    return sorted(p for p in os.listdir(tmp_path)
                  if p.startswith(name + '.old-'))


def test_hash_follows_the_resolved_config(tmp_path):
    a = write_config(tmp_path / 'a.py')
    b = write_config(tmp_path / 'b.py')  # same content, other file
    c = write_config(tmp_path / 'c.py', lr=0.02)
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)
    assert len(config_hash(a)) == 16


def test_fresh_work_dir_is_created_and_stamped(tmp_path):
    cfg = write_config(tmp_path / 'a.py')
    work = str(tmp_path / 'work')
    assert claim_work_dir(cfg, work) is None
    with open(osp.join(work, HASH_FILE)) as f:
        assert f.read().strip() == config_hash(cfg)


def test_run_of_the_same_config_is_kept_for_resume(tmp_path):
    cfg = write_config(tmp_path / 'a.py')
    work = str(tmp_path / 'work')
    fake_run(work, stamp=config_hash(cfg))
    assert claim_work_dir(cfg, work) is None
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert siblings(tmp_path, 'work') == []


@pytest.mark.parametrize('stamp', ['0123456789abcdef', None],
                         ids=['other-config', 'unstamped'])
def test_run_of_another_config_is_moved_aside(tmp_path, stamp):
    cfg = write_config(tmp_path / 'a.py')
    work = str(tmp_path / 'work')
    fake_run(work, stamp=stamp)
    moved = claim_work_dir(cfg, work)
    assert moved is not None and siblings(tmp_path, 'work') == [
        osp.basename(moved)]
    # the old run is intact where it was moved; the work dir starts empty
    assert osp.isfile(osp.join(moved, 'epoch_1.pth'))
    assert sorted(os.listdir(work)) == [HASH_FILE]


def test_edited_config_moves_its_own_old_run_aside(tmp_path, monkeypatch):
    # one fixed timestamp: both moves below happen "within one second"
    monkeypatch.setattr(resume.time, 'strftime', lambda fmt: '20261123_000000')
    cfg = write_config(tmp_path / 'a.py')
    work = str(tmp_path / 'work')
    fake_run(work, stamp=config_hash(cfg))
    write_config(tmp_path / 'a.py', lr=0.02)  # the user edits the config
    assert claim_work_dir(cfg, work) is not None
    # twice within one second: the second move gets its own name
    fake_run(work, stamp='0' * 16)
    claim_work_dir(cfg, work)
    assert siblings(tmp_path, 'work') == [
        'work.old-20261123_000000', 'work.old-20261123_000000~1']


def test_work_dir_without_checkpoint_is_not_moved(tmp_path):
    """An interrupted start with no checkpoint has nothing to resume."""
    cfg = write_config(tmp_path / 'a.py')
    work = tmp_path / 'work'
    work.mkdir()
    (work / '20261123_000000').mkdir()  # a log dir only
    assert claim_work_dir(cfg, str(work)) is None
    assert (work / '20261123_000000').is_dir()


def test_cli(tmp_path):
    """As run_demo.sh runs it, on a config that imports mmretina."""
    cfg = str(tmp_path / 'a.py')
    with open(cfg, 'w') as f:
        f.write("custom_imports = dict(imports=['mmretina'])\n"
                "model = dict(type='RetinaNet')\n")
    work = str(tmp_path / 'work')
    fake_run(work, stamp='f' * 16)
    tool = osp.join(TOOLS, 'claim_work_dir.py')
    out = subprocess.run([sys.executable, tool, cfg, work], cwd=tmp_path,
                         env=ENV, capture_output=True, text=True,
                         check=True).stdout
    assert 'holds a run of another config: moved to' in out
    out = subprocess.run([sys.executable, tool, cfg, work], cwd=tmp_path,
                         env=ENV, capture_output=True, text=True,
                         check=True).stdout
    assert 'ready for' in out
    bad = subprocess.run([sys.executable, tool, str(tmp_path / 'nope.py'),
                          work], cwd=tmp_path, env=ENV, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and 'config file not found' in bad.stderr
