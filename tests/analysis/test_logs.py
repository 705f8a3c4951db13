"""mmretina.analysis.logs (tools/analysis_tools/analyze_logs.py) on logs
in mmengine 0.10's
``vis_data/scalars.json`` layout (the lines below have the keys and order
mmengine's LocalVisBackend writes for an epoch-based mmdet run)."""
import json
import os
import os.path as osp

import pytest

from mmretina.analysis import logs as analyze_logs


def train_line(it, epoch, loss, time=0.5):
    return {'lr': 1e-3, 'data_time': 0.04, 'grad_norm': 9.0, 'loss': loss,
            'loss_cls': loss * 0.7, 'loss_bbox': loss * 0.3, 'time': time,
            'epoch': epoch, 'iter': it, 'step': it}


def val_line(epoch, ap50):
    return {'coco/bbox_mAP': ap50 / 3, 'coco/bbox_mAP_50': ap50,
            'coco/bbox_mAP_75': ap50 / 4, 'coco/bbox_mAP_s': 0.0,
            'data_time': 0.01, 'time': 0.2, 'step': epoch}


def write_session(work_dir, stamp, lines):
    path = osp.join(work_dir, stamp, 'vis_data', 'scalars.json')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.writelines(json.dumps(line) + '\n' for line in lines)
    return path


@pytest.fixture
def resumed_run(tmp_path):
    """Two sessions: the first stopped in epoch 3 (after logging iteration
    50), the second resumed from the epoch-2 checkpoint."""
    work = str(tmp_path / 'run')
    write_session(work, '20260101_100000', [
        train_line(20, 1, 4.0, time=0.9), train_line(40, 2, 3.0),
        val_line(2, 0.10), train_line(50, 3, 2.9)])
    write_session(work, '20260101_110000', [
        train_line(50, 3, 2.5, time=0.8), train_line(60, 3, 2.4),
        val_line(3, 0.20)])
    return work


def test_work_dir_sessions_are_merged_later_wins(resumed_run):
    log = analyze_logs.load_log(resumed_run)
    assert sorted(log.train) == [20, 40, 50, 60]
    assert log.train[50]['loss'] == 2.5  # the resumed session's value
    assert sorted(log.val) == [2, 3] and log.by_epoch
    xs, ys, xlabel = log.series('loss')
    assert (xs, ys, xlabel) == ([20, 40, 50, 60], [4.0, 3.0, 2.5, 2.4],
                                'iteration')
    # mmdet's short names resolve to mmengine's prefixed keys
    assert log.series('bbox_mAP_50') == ([2, 3], [0.10, 0.20], 'epoch')
    assert log.series('coco/bbox_mAP_50') == log.series('bbox_mAP_50')


def test_unknown_key_lists_the_keys(resumed_run):
    log = analyze_logs.load_log(resumed_run)
    with pytest.raises(KeyError, match='has no .bbox_mAP_5.; it has: lr'):
        log.series('bbox_mAP_5')


def test_cal_train_time(resumed_run, capsys):
    log = analyze_logs.load_log(resumed_run)
    # epoch 1 has one record (the outlier rule drops it), epoch 3 two
    summary, = analyze_logs.cal_train_time([log], include_outliers=True)
    assert summary['slowest_epoch'] == 1 and summary['slowest'] == 0.9
    assert summary['mean'] == pytest.approx((0.9 + 0.5 + 0.65) / 3)
    summary, = analyze_logs.cal_train_time([log])
    assert summary['mean'] == pytest.approx(0.5)  # epoch 3 without 0.8
    assert 'average iter time: 0.5000 s/iter' in capsys.readouterr().out


def test_plot_curve_cli_writes_png(tools_helpers, resumed_run, tmp_path):
    out = str(tmp_path / 'curves.png')
    other = write_session(str(tmp_path / 'other'), '20260102_000000', [
        train_line(20, 1, 5.0), val_line(1, 0.05)])
    proc = tools_helpers.python_tool(
        'analysis_tools/analyze_logs.py', 'plot_curve', resumed_run, other,
        '--keys', 'loss', 'loss_cls', 'coco/bbox_mAP_50', '--legend', 'a',
        'b', '--out', out, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert osp.getsize(out) > 10000


def test_bad_logs_give_clear_errors(tools_helpers, tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(train_line(1, 1, 1.0)) + '\n{oops\n')
    proc = tools_helpers.python_tool('analysis_tools/analyze_logs.py',
                                     'plot_curve', str(bad), timeout=120)
    assert proc.returncode == 2
    assert 'bad.json, line 2: not JSON' in proc.stdout
    with pytest.raises(FileNotFoundError, match='holds no mmengine log'):
        analyze_logs.load_log(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='no such log file'):
        analyze_logs.load_log(str(tmp_path / 'missing'))
    other = tmp_path / 'other.json'
    other.write_text('{"a": 1}\n')
    with pytest.raises(ValueError, match='no "step"'):
        analyze_logs.load_log(str(other))
