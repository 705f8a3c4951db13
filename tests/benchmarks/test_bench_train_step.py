"""benchmarks/bench_train_step.py and benchmarks/profile_demo_step.py run
end to end at tiny sizes (1 repeat, fp32, 1 thread) and report what they
claim: the CPU, a step time per implementation, the same first-step loss for
mmdet's and mmretina's heads (same seed, same batch), and a profile whose
stages are the step's parts."""
import json
import os.path as osp
import sys

import pytest

BENCH = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))), 'benchmarks')
sys.path.insert(0, BENCH)
import bench_train_step  # noqa: E402
import profile_demo_step  # noqa: E402


def test_bench_train_step_tiny(tmp_path, capsys, one_thread):
    out = tmp_path / 'bench.json'
    bench_train_step.main([
        '--repeats', '1', '--size', '64', '--imgs', '1', '--precision',
        'fp32', '--threads', '1', '--json',
        str(out)
    ])
    text = capsys.readouterr().out
    assert text.startswith('CPU: ') and 'mmdet / mmretina' in text
    res = json.loads(out.read_text())
    assert res['threads'] == 1 and res['size'] == 64
    rows = {r['impl']: r for r in res['rows']}
    assert set(rows) == {'mmdet', 'mmretina'}
    assert all(r['precision'] == 'fp32' and r['step_ms'] > 0
               for r in rows.values())
    # same weights (seed 0), same batch: the two heads' losses agree
    assert rows['mmdet']['first_loss'] == pytest.approx(
        rows['mmretina']['first_loss'], rel=1e-4)


def test_bench_train_step_bad_args(capsys):
    with pytest.raises(SystemExit):
        bench_train_step.main(['--repeats', '0'])
    assert '--repeats >= 1' in capsys.readouterr().err


def test_profile_demo_step_profile(tmp_path, capsys, one_thread):
    out = tmp_path / 'prof.json'
    profile_demo_step.main([
        '--sections', 'profile', '--repeats', '1', '--precision', 'fp32',
        '--threads', '1', '--json',
        str(out)
    ])
    assert '[profile] fp32' in capsys.readouterr().out
    prof = json.loads(out.read_text())['profile']['fp32']
    stages = prof['stages_ms']
    for k in ('backbone', 'FPN', 'head convs',
              'targets (anchors + assignment)', 'backward',
              'optimizer (clip + AdamW)', 'EMA update'):
        assert stages[k] > 0, k
    # one step (median of 1): the stages are its parts
    assert sum(stages.values()) == pytest.approx(prof['step_ms'], rel=0.05)
    assert prof['backward_ms']['convolution'] > 0
