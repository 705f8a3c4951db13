"""mmretina.analysis.ablations (tools/analysis_tools/ablate.py): budgets,
run identity, and a group run end to end at a tiny budget (one iteration
per run) on a tiny tree set laid out like data/deepforest."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config

from mmretina.analysis import ablations as ablate
from mmretina.cli import ablate as cli

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

DEMO = osp.join(REPO_ROOT, 'configs',
                'retinanet_r18_fpn_deepforest_320px_200e.py')


def make_tree_set(root, num_train=4, num_val=2, size=160, seed=0):
    """A one-class ('tree') COCO set like data/deepforest: green discs on
    brown noise, annotations/{train,val}.json and images/."""
    import cv2
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_id = 1
    for split, num in (('train', num_train), ('val', num_val)):
        images, anns = [], []
        for i in range(num):
            img = rng.randint(40, 90, (size, size, 3)).astype(np.uint8)
            name = f'{split}_{i}.png'
            for _ in range(5):
                r = int(rng.randint(10, 24))
                cx, cy = (int(v) for v in rng.randint(r, size - r, 2))
                cv2.circle(img, (cx, cy), r, (40, 200, 60), -1)
                anns.append(dict(id=ann_id, image_id=i + 1, category_id=1,
                                 bbox=[cx - r, cy - r, 2 * r, 2 * r],
                                 area=4 * r * r, iscrowd=0))
                ann_id += 1
            cv2.imwrite(osp.join(root, 'images', name), img)
            images.append(dict(id=i + 1, file_name=name, width=size,
                               height=size))
        with open(osp.join(root, 'annotations', f'{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=anns,
                           categories=[dict(id=1, name='tree')]), f)
    return root


def data_options(root):
    root = root.rstrip('/') + '/'
    return [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/val.json',
        f'test_evaluator.ann_file={root}annotations/val.json',
    ]


@pytest.fixture(scope='module')
def tree_root(tmp_path_factory):
    return make_tree_set(str(tmp_path_factory.mktemp('trees')))


def test_paper_numbers_match_table_1():
    # a few cells checked against arXiv:1708.02002v2, Table 1
    a = {v.labels[0]: v.paper for v in ablate.GROUPS['a'].variants}
    assert a['.75'] == (31.1, 49.4, 33.0) and a['.10'] == (0.0, 0.0, 0.0)
    b = {v.labels: v.paper for v in ablate.GROUPS['b'].variants}
    assert b[('2', '.25')] == (34.0, 52.5, 36.5)
    c = {v.labels: v.paper for v in ablate.GROUPS['c'].variants}
    assert c[('2', '3')] == (34.2, 53.1, 36.5)
    e = {v.name: v.paper for v in ablate.GROUPS['e'].variants}
    assert e['ce_no_prior'] == ablate.DIVERGED


def test_every_variant_config_exists():
    for group in ablate.GROUPS.values():
        for v in group.variants:
            assert osp.isfile(osp.join(REPO_ROOT, v.config)), v.config


def _demo_cfg_with_80_train_images(root):
    """The demo config, its train set an annotation file of 80 images (the
    demo's tiles): 20 iterations per epoch at batch 4, with or without
    data/deepforest built (a clean clone has none)."""
    cfg = Config.fromfile(DEMO)
    ann = root / 'annotations' / 'train.json'
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(dict(
        images=[dict(id=i, file_name=f'{i}.png', width=400, height=400)
                for i in range(80)], annotations=[], categories=[])))
    cfg.train_dataloader.dataset.data_root = str(root)
    cfg.train_dataloader.dataset.ann_file = 'annotations/train.json'
    return cfg


def test_budget_rescales_schedule_ema_and_checkpoint(tmp_path):
    cfg = ablate.apply_budget(_demo_cfg_with_80_train_images(tmp_path),
                              epochs=20, seed=3)
    assert cfg.train_cfg.max_epochs == 20 and cfg.train_cfg.val_interval == 5
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == 100  # iterations; shorter than half of 400
    assert cosine.end == 20 and cosine.T_max == 20
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook'][0]
    assert ema.momentum == pytest.approx(0.002 * 200 / 20)
    assert cfg.default_hooks.checkpoint.interval == 20
    assert cfg.randomness.seed == 3
    # 2 epochs of 20 iterations: the 100-iteration warm-up is cut to 20
    cfg = ablate.apply_budget(_demo_cfg_with_80_train_images(tmp_path),
                              epochs=2)
    assert cfg.param_scheduler[0].end == 20


def test_budget_iteration_loop_moves_milestones():
    cfg = Config(dict(
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=90000,
                       val_interval=10000),
        param_scheduler=[
            dict(type='LinearLR', by_epoch=False, begin=0, end=500),
            dict(type='MultiStepLR', by_epoch=False, begin=0, end=90000,
                 milestones=[60000, 80000])],
        default_hooks=dict(checkpoint=dict(by_epoch=False, interval=10000))))
    ablate.apply_budget(cfg, iters=900)
    assert cfg.train_cfg.max_iters == 900
    assert cfg.param_scheduler[1].milestones == [600, 800]
    assert cfg.param_scheduler[1].end == 900
    assert cfg.param_scheduler[0].end == 500


def test_budget_in_the_wrong_unit_is_refused():
    with pytest.raises(ValueError, match='--epochs'):
        ablate.apply_budget(Config.fromfile(DEMO), iters=10)
    with pytest.raises(ValueError, match='at least 1'):
        ablate.apply_budget(Config.fromfile(DEMO), epochs=0)


def test_identical_variants_share_one_run(tmp_path):
    groups = ablate.GROUPS
    b2 = [v for v in groups['b'].variants if v.name == 'fl_gamma2_alpha0p25']
    fl = [v for v in groups['e'].variants if v.name == 'fl_prior']
    ce = [v for v in groups['e'].variants if v.name == 'ce_prior']
    dirs = [ablate.prepare_run(v[0], str(tmp_path), 0, 5, None, None)[1]
            for v in (b2, fl, ce)]
    assert dirs[0] == dirs[1] != dirs[2]
    # another seed or budget is another run
    other = ablate.prepare_run(fl[0], str(tmp_path), 1, 5, None, None)[1]
    assert other != dirs[1]


def _write_scalars(path, records):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in records)


def test_final_metrics_reads_the_last_validation_of_all_sessions(tmp_path):
    # mmengine's vis_data/scalars.json lines; a resumed run has two sessions
    train = dict(lr=1e-3, loss=1.0, loss_cls=0.5, epoch=1, iter=20, step=20)
    val = {'coco/bbox_mAP': 0.1, 'coco/bbox_mAP_50': 0.3,
           'coco/bbox_mAP_75': 0.05, 'data_time': 0.01, 'time': 0.2}
    _write_scalars(str(tmp_path / '20260101_000000/vis_data/scalars.json'),
                   [train, dict(val, step=5)])
    assert ablate.final_metrics(str(tmp_path))['step'] == 5
    _write_scalars(str(tmp_path / '20260101_010000/vis_data/scalars.json'),
                   [train, dict(val, step=10, **{'coco/bbox_mAP_50': 0.4})])
    metrics = ablate.final_metrics(str(tmp_path))
    assert metrics == {'coco/bbox_mAP': 0.1, 'coco/bbox_mAP_50': 0.4,
                       'coco/bbox_mAP_75': 0.05, 'step': 10}


def test_final_metrics_no_detections_is_zero_ap(tmp_path):
    # CocoMetric returns no metric when nothing was detected
    _write_scalars(str(tmp_path / '20260101_000000/vis_data/scalars.json'),
                   [dict(lr=1e-3, loss=1.0, step=1),
                    dict(data_time=0.01, time=0.1, step=1)])
    metrics = ablate.final_metrics(str(tmp_path))
    assert metrics['coco/bbox_mAP_50'] == 0.0 and metrics['no_detections']
    # no validation at all (stopped before the first one)
    _write_scalars(str(tmp_path / 'b/20260101_000000/vis_data/scalars.json'),
                   [dict(lr=1e-3, loss=1.0, step=1)])
    assert ablate.final_metrics(str(tmp_path / 'b')) is None


def _ablate(tools_helpers, *args):
    return tools_helpers.python_tool('analysis_tools/ablate.py', *args,
                                     timeout=600)


def test_group_run_end_to_end(tools_helpers, tree_root, tmp_path, capsys):
    work = str(tmp_path / 'abl')
    # score_thr 0: after one iteration every score is near the prior 0.01
    args = ['e', '--epochs', '1', '--variants', 'ce_prior', '--work-dir',
            work, '--cfg-options', *data_options(tree_root),
            'model.test_cfg.score_thr=0.0']
    proc = _ablate(tools_helpers, *args)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert proc.stdout.count('training ->') == 1
    results = json.load(open(osp.join(work, 'e', 'results.json')))
    runs = results['runs']
    assert len(runs) == 1 and runs[0]['variant'] == 'ce_prior'
    result = runs[0]['result']
    assert result['status'] == 'done' and 'no_detections' not in result
    assert 0 <= result['coco/bbox_mAP_50'] <= 1
    assert result['step'] == 1  # validated at the end of epoch 1
    table = open(osp.join(work, 'e', 'table.md')).read()
    row = [line for line in table.splitlines() if line.startswith('| CE')]
    assert len(row) == 1 and '| 30.2 |' in row[0]
    assert f'{100 * result["coco/bbox_mAP_50"]:.1f}' in row[0]
    assert '(2 images, 10 boxes)' in table
    assert osp.getsize(osp.join(work, 'e', 'table.png')) > 1000

    # idempotent: a second call trains nothing and gives the same table
    # (in this process: nothing to train, no need to pay a start-up)
    log = osp.join(runs[0]['run_dir'], 'train.log')
    before = open(log).read()
    capsys.readouterr()
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert 'training ->' not in out and out.count('done before') == 1
    assert open(log).read() == before
    assert open(osp.join(work, 'e', 'table.md')).read() == table
    # training other variants keeps the finished ones in the table
    assert cli.main(args + ['--table-only', '--variants', 'fl_prior']) == 0
    table = open(osp.join(work, 'e', 'table.md')).read()
    assert row[0] in table.splitlines()
    assert any(line.startswith('| FL | prior .01 |') and '0 (1 missing)'
               in line for line in table.splitlines())

    # a run whose loss becomes NaN/inf is a result: "diverged at iter N"
    args = ['e', '--epochs', '1', '--variants', 'ce_no_prior', '--work-dir',
            work, '--cfg-options', *data_options(tree_root),
            'optim_wrapper.optimizer.lr=1e30',
            'train_dataloader.batch_size=2']
    proc = _ablate(tools_helpers, *args)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'diverged at iteration 2' in proc.stdout
    table = open(osp.join(work, 'e', 'table.md')).read()
    row = [line for line in table.splitlines() if 'bias 0' in line]
    assert 'diverges' in row[0] and 'diverged (iter 2)' in row[0]


def test_table_mean_and_spread_over_seeds():
    group = ablate.GROUPS['a']

    def run(variant, seed, ap50, status='done'):
        result = dict(status=status, seconds=1.0)
        if status == 'done':
            result.update({'coco/bbox_mAP': ap50 / 3,
                           'coco/bbox_mAP_50': ap50,
                           'coco/bbox_mAP_75': ap50 / 4})
        else:
            result['iteration'] = 7
        return dict(variant=variant, seed=seed, run_dir='-', result=result)
    records = [run('ce_alpha0p75', 0, 0.30), run('ce_alpha0p75', 1, 0.40),
               run('ce_alpha0p10', 0, 0.0, status=ablate.DIVERGED),
               run('ce_alpha0p10', 1, 0.02),
               dict(variant='ce_alpha0p99', seed=0, run_dir='-', result=None)]
    rows = ablate.summarise(group, records)
    assert [r['variant'].name for r in rows] == [
        'ce_alpha0p10', 'ce_alpha0p75', 'ce_alpha0p99']
    mean, std = rows[1]['stats']['AP50']
    assert mean == pytest.approx(35.0) and std == pytest.approx(7.0711, 1e-4)
    assert rows[0]['diverged'] == [7] and rows[0]['done'] == 1
    table = ablate.markdown_table(group, rows, '20 epochs', 2, 'val set x')
    lines = table.splitlines()
    assert '| .75 | 31.1 | 49.4 | 33.0 | 11.7 ± 2.4 | 35.0 ± 7.1 | ' \
        '8.8 ± 1.8 | 2 |' in lines
    assert any(line.startswith('| .10 | 0.0 |') and '1 + 1 diverged' in line
               for line in lines)
    assert any(line.startswith('| .99 |') and '(1 missing)' in line
               for line in lines)
    assert 'mean ± std over 2 seeds' in table


def test_unknown_variant_is_refused(tools_helpers, tmp_path):
    proc = _ablate(tools_helpers, 'a', '--variants', 'ce_alpha0p3',
                   '--work-dir', str(tmp_path))
    assert proc.returncode == 2
    assert 'group a has no variant ce_alpha0p3' in proc.stdout
