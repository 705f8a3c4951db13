"""tools/demo_record.py: the main job's record (what run_demo.sh measured)
is a record of benchmarks/report.py that the README renders: its CPU, the
precision the config trains in there, the job's and the training's seconds,
the test metrics of tools/test.py's latest run, the date and the commit."""
import json
import os
import os.path as osp
import sys
import time

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools'))
sys.path.insert(0, osp.join(REPO, 'benchmarks'))
import demo_record  # noqa: E402
import report  # noqa: E402

CONFIG = osp.join(REPO, 'configs', 'retinanet_r18_fpn_deepforest.py')


def write_test_run(test_dir, stamp, metrics, mtime):
    """What mmengine leaves after tools/test.py: <stamp>/<stamp>.json."""
    os.makedirs(test_dir / stamp)
    path = test_dir / stamp / f'{stamp}.json'
    path.write_text(json.dumps(metrics))
    os.utime(path, (mtime, mtime))


def test_latest_test_run_metrics_are_read(tmp_path):
    now = time.time()
    write_test_run(tmp_path, '20261201_100000',
                   {'coco/bbox_mAP_50': 0.1, 'coco/bbox_mAP': 0.01}, now - 60)
    write_test_run(tmp_path, '20261201_110000',
                   {'coco/bbox_mAP_50': 0.176, 'coco/bbox_mAP': 0.058}, now)
    assert demo_record.test_metrics(str(tmp_path))['coco/bbox_mAP_50'] == \
        0.176
    with pytest.raises(FileNotFoundError, match='no <timestamp>'):
        demo_record.test_metrics(str(tmp_path / 'none'))


@pytest.mark.parametrize('wrapper, native, precision', [
    (dict(type='mmretina.BF16OptimWrapper'), True, 'bf16'),
    (dict(type='mmretina.BF16OptimWrapper'), False, 'fp32'),
    (dict(type='mmretina.BF16OptimWrapper', enabled=True), False, 'bf16'),
    (dict(type='mmretina.BF16OptimWrapper', enabled=False), True, 'fp32'),
    (dict(type='OptimWrapper'), True, 'fp32'),
])
def test_training_precision_follows_the_wrapper_and_cpu(
        wrapper, native, precision):
    assert demo_record.training_precision(wrapper, native) == precision


def test_record_of_a_run_renders_as_the_readme_row():
    rec = demo_record.main_job_record(
        'configs/retinanet_r18_fpn_deepforest.py',
        'AMD EPYC (avx2), no native bf16, 2 cores, 2 threads', False,
        'fp32', 778, 667, {'coco/bbox_mAP_50': 0.17649, 'coco/bbox_mAP':
                           0.0581},
        figures={'model.onnx on onnxruntime test mAP50': '0.176'},
        commit='0123456789')
    assert rec['rows'] == [[
        'AMD EPYC (avx2), no native bf16, 2 cores, 2 threads', 'fp32',
        '778 s', '667 s', '0.176', '0.058']]
    assert rec['columns'] == list(demo_record.COLUMNS)
    assert rec['command'] == 'bash tools/run_demo.sh'
    assert rec['commit'] == '0123456789'
    assert rec['context']['bf16 native'] == 'no'
    assert report.figure_value(
        rec, 'model.onnx on onnxruntime test mAP50') == '0.176'
    # the same columns as the transcribed rows beside it on the README
    readme_rec = report.read_record(osp.join(
        REPO, 'docs', 'user_guides', 'records',
        'main_job_2026-12-02_epyc.json'))
    table = report.render_rows([readme_rec, rec])
    assert '| fp32 | 778 s | 667 s | 0.176 | 0.058 |' in table
    assert 'commit 0123456789, on AMD EPYC (avx2)' in table
    with pytest.raises(KeyError, match='coco/bbox_mAP'):
        demo_record.main_job_record('c.py', 'cpu', False, 'fp32', 1, 1,
                                    {'coco/bbox_mAP_50': 0.1})


def test_write_command_records_this_machine_and_clone(tmp_path):
    write_test_run(tmp_path / 'test', '20261201_110000',
                   {'coco/bbox_mAP_50': 0.25, 'coco/bbox_mAP': 0.065},
                   time.time())
    out = tmp_path / 'main_job.json'
    assert demo_record.main([
        'write', CONFIG, '--job-s', '375', '--train-s', '334', '--test-dir',
        str(tmp_path / 'test'), '--figure',
        'model.int8.onnx on openvino test mAP50=0.178', '--out', str(out)
    ]) == 0
    rec = report.read_record(str(out))
    from mmretina.utils.cpu_info import describe_cpu
    info = describe_cpu()
    assert rec['cpu'] == info.summary()
    assert rec['rows'][0][1] == ('bf16' if info.bf16_native else 'fp32')
    assert rec['rows'][0][2:] == ['375 s', '334 s', '0.250', '0.065']
    assert rec['commit'] == report.git_commit()
    assert rec['figures'] == {
        'model.int8.onnx on openvino test mAP50': '0.178'}


def test_accuracy_command_prints_the_metrics(tmp_path, capsys):
    write_test_run(tmp_path, 's', {'coco/bbox_mAP_50': 0.2491,
                                   'coco/bbox_mAP': 0.0652}, time.time())
    assert demo_record.main(['accuracy', str(tmp_path)]) == 0
    assert capsys.readouterr().out == \
        'coco/bbox_mAP_50 0.249, coco/bbox_mAP 0.065\n'
