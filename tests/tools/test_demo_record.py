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


def test_field_record_rows_per_image_and_overall():
    r = dict(precision=0.36249, recall=0.40983, mAP=0.0694, mAP50=0.1971,
             tp=25, n_gt=61, n_pred=69)
    none = dict(precision=None, recall=0.0, mAP=0.0, mAP50=0.0, tp=0,
                n_gt=37, n_pred=0)
    summary = dict(iou_thr=0.4, score_thr=0.3,
                   per_raster={'/data/OSBS_029.png': r,
                               '/data/SOAP_061.png': none},
                   overall=dict(r, precision=0.36249, n_gt=98))
    rec = demo_record.field_record(summary, ['c.py', 'm.pth', '--coco',
                                             'val.json'], 'AMD EPYC',
                                   commit='0123456789')
    assert rec['columns'][-1] == 'detections >= 0.3'
    assert rec['rows'] == [
        ['OSBS_029.png', '0.362', '0.410', '0.069', '0.197', '25', '61',
         '69'],
        ['SOAP_061.png', '-', '0.000', '0.000', '0.000', '0', '37', '0'],
        ['overall (mean over images)', '0.362', '0.410', '0.069', '0.197',
         '25', '98', '69']]
    assert rec['command'] == ('python tools/analysis_tools/eval_field.py '
                              'c.py m.pth --coco val.json')
    assert rec['provenance'] == 'measured'
    assert report.figure_value(rec, '3/mAP50') == '0.197'


def test_field_command_runs_the_evaluation_and_writes_its_record(
        tmp_path, capsys):
    """A real eval_field run (a random-weight model of the demo config on a
    georeferenced raster with a GeoPackage of boxes): the record holds the
    summary.json it wrote; a failed run writes no record."""
    np = pytest.importorskip('numpy')
    gpd = pytest.importorskip('geopandas')
    rasterio = pytest.importorskip('rasterio')
    import torch
    from mmdet.apis import init_detector
    from rasterio.transform import from_origin
    from shapely.geometry import box

    torch.manual_seed(0)
    model = init_detector(CONFIG, None, device='cpu')
    with torch.no_grad():  # random weights with many detections (~0.18)
        model.bbox_head.retina_cls.bias.fill_(-1.5)
    ckpt = tmp_path / 'random.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=('tree', )))), ckpt)
    rng = np.random.default_rng(0)
    with rasterio.open(tmp_path / 'p1.tif', 'w', driver='GTiff', width=160,
                       height=160, count=3, dtype='uint8', crs='EPSG:32617',
                       transform=from_origin(500000, 4000000, 0.1, 0.1)) as d:
        d.write(rng.integers(0, 255, (3, 160, 160), dtype=np.uint8))
    xy = rng.uniform(0, 14, (6, 2))
    gpd.GeoDataFrame(geometry=[
        box(500000 + a, 4000000 - b - 2, 500000 + a + 2, 4000000 - b)
        for a, b in xy], crs='EPSG:32617').to_file(tmp_path / 'crowns.gpkg')
    out = tmp_path / 'field.json'
    eval_args = [CONFIG, str(ckpt), '--rasters', str(tmp_path / 'p1.tif'),
                 '--labels', str(tmp_path / 'crowns.gpkg'), '--out-dir',
                 str(tmp_path / 'field'), '--tile', '128', '--score-thr',
                 '0.1', '--device', 'cpu', '--no-progress']
    assert demo_record.main(['field', '--out', str(out)] + eval_args) == 0
    summary = json.loads((tmp_path / 'field' / 'summary.json').read_text())
    rec = report.read_record(str(out))
    overall = summary['overall']
    assert rec['rows'][-1] == [
        'overall (mean over images)', f"{overall['precision']:.3f}",
        f"{overall['recall']:.3f}", f"{overall['mAP']:.3f}",
        f"{overall['mAP50']:.3f}", str(overall['tp']), '6',
        str(overall['n_pred'])]
    assert overall['n_pred'] > 0
    assert rec['rows'][0][0] == 'p1.tif'
    assert rec['columns'][-1] == 'detections >= 0.1'
    assert rec['command'].endswith(' '.join(eval_args))

    missing = tmp_path / 'none.json'
    assert demo_record.main(['field', '--out', str(missing), CONFIG,
                             str(tmp_path / 'absent.pth'), '--rasters',
                             str(tmp_path / 'p1.tif'), '--labels',
                             str(tmp_path / 'crowns.gpkg'), '--out-dir',
                             str(tmp_path / 'f2')]) == 1
    assert 'absent.pth' in capsys.readouterr().err  # a message, no traceback
    assert not missing.exists()
