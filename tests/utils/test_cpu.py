"""mmretina.utils.cpu_info, .train_estimate and mmretina.cli.cpu_info:
CPU model, ISA flags and native bf16 from
/proc/cpuinfo text (this machine's and two others'), the one-line summary,
the command line, and the training-time estimate (real iterations of the
DeepForest config on a tiny synthetic set)."""
import json
import os
import os.path as osp

import pytest
import torch

from mmretina.cli.cpu_info import main
from mmretina.utils.cpu_info import CPUInfo, describe_cpu, parse_cpuinfo
from mmretina.utils.train_estimate import estimate_training

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

AMX = '''processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu
'''
EPYC = '''processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx fma avx2 bmi2
'''


def test_parse_first_processor():
    model, flags = parse_cpuinfo(AMX)
    assert model == 'Intel(R) Xeon(R) Processor'
    assert {'amx_bf16', 'avx512_bf16', 'avx2'} <= flags
    assert parse_cpuinfo('') == ('', set())
    assert parse_cpuinfo('garbage without colons\n') == ('', set())


def test_parse_bad_input():
    with pytest.raises(TypeError, match='expected str'):
        parse_cpuinfo(None)


def test_describe_amx_and_avx2_only():
    amx = describe_cpu(AMX)
    assert amx.bf16_native
    assert amx.flags == ['amx_bf16', 'avx512_bf16', 'avx512f', 'avx2']
    epyc = describe_cpu(EPYC)
    assert not epyc.bf16_native
    assert epyc.model == 'AMD EPYC 7B13' and epyc.flags == ['avx2']
    assert 'no native bf16' in epyc.summary()
    assert epyc.summary().startswith('AMD EPYC 7B13 (avx2), ')


def test_describe_no_model_name_falls_back():
    info = describe_cpu('flags : avx2\n')
    assert info.model  # platform.processor() / machine()
    assert info.flags == ['avx2'] and not info.bf16_native


def test_describe_this_machine():
    info = describe_cpu()
    assert isinstance(info, CPUInfo) and info.model
    assert info.threads == torch.get_num_threads()
    assert info.cores >= 1
    assert info.bf16_native == bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert f'{info.threads} threads' in info.summary()


def test_main_json(capsys):
    main(['--json'])
    fields = json.loads(capsys.readouterr().out)
    assert set(fields) == {'model', 'flags', 'bf16_native', 'cores',
                           'threads'}


def test_main_bad_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(['--nope'])
    assert e.value.code == 2
    assert 'unrecognized arguments' in capsys.readouterr().err


def _tiny_deepforest_config(root, num_images=6, max_epochs=3):
    """The DeepForest demo config on a tiny synthetic COCO set."""
    import cv2
    import numpy as np
    from mmengine.config import Config
    rng = np.random.RandomState(0)
    os.makedirs(osp.join(root, 'images'))
    images, anns = [], []
    for i in range(num_images):
        img = rng.randint(0, 255, (160, 160, 3)).astype(np.uint8)
        cv2.imwrite(osp.join(root, 'images', f'{i}.png'), img)
        images.append(dict(id=i + 1, file_name=f'{i}.png', width=160,
                           height=160))
        anns.append(dict(id=i + 1, image_id=i + 1, category_id=1,
                         bbox=[20., 30., 40., 50.], area=2000., iscrowd=0))
    with open(osp.join(root, 'ann.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=1, name='tree')]), f)
    cfg = Config.fromfile(osp.join(REPO, 'configs',
                                   'retinanet_r18_fpn_deepforest.py'))
    ds = cfg.train_dataloader.dataset
    ds.data_root, ds.ann_file = root + '/', 'ann.json'
    cfg.train_cfg.max_epochs = max_epochs
    return cfg


def test_estimate_training(tmp_path, one_thread):
    from mmretina.engine.optimizers import bf16_supported
    cfg = _tiny_deepforest_config(str(tmp_path))
    est = estimate_training(cfg, steps=1, warmup=1)
    assert est.iters == 3 * 2  # 3 epochs of ceil(6 / 4) batches
    assert est.precision == ('bf16' if bf16_supported('cpu') else 'fp32')
    assert 0 < est.data_s < est.iter_s
    assert est.total_s == pytest.approx(est.iters * est.iter_s)
    assert f'{est.iters} iterations' in est.summary()
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.optim_wrapper.pop('enabled', None)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=7)
    est = estimate_training(cfg, steps=1, warmup=0)
    assert est.precision == 'fp32' and est.iters == 7


def test_estimate_training_bad_input(tmp_path):
    with pytest.raises(ValueError, match='steps >= 1'):
        estimate_training('unused.py', steps=0)
    cfg = _tiny_deepforest_config(str(tmp_path))
    cfg.train_cfg = dict(type='EpochBasedTrainLoop')
    with pytest.raises(ValueError, match='neither max_epochs nor max_iters'):
        estimate_training(cfg)


def test_flags_follow_what_aten_dispatches(tmp_path):
    """Under ATEN_CPU_CAPABILITY=default ATen uses no vector extension: the
    description names none, whatever /proc/cpuinfo lists."""
    import subprocess
    import sys
    env = dict(os.environ, ATEN_CPU_CAPABILITY='default',
               PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH',
                                                             ''))
    out = subprocess.run(
        [sys.executable, '-c', 'from mmretina.utils.cpu_info import '
         'cpu_capability, describe_cpu; print(cpu_capability(), '
         'describe_cpu().flags)'], env=env, capture_output=True, text=True,
        timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['DEFAULT', '[]']
