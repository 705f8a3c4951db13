"""``mmretina dota split`` (mmretina/cli/dota_split.py): the command over
split_dota, with mmrotate's options and split configs; errors name the file
and exit 1."""
import json
import os

import cv2
import numpy as np
import pytest

from mmretina.cli.main import main
from mmretina.datasets.converters.dota import write_dota_labels

pytest.importorskip('mmrotate')


@pytest.fixture
def dota_dir(tmp_path):
    os.makedirs(tmp_path / 'images')
    img = np.full((400, 600, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / 'images' / 'P0001.png'), img)
    write_dota_labels(str(tmp_path / 'labelTxt' / 'P0001.txt'),
                      [[10, 10, 50, 10, 50, 30, 10, 30],
                       [380, 100, 420, 100, 420, 130, 380, 130]],
                      ['ship', 'harbor'], gsd=0.3,
                      imagesource='GoogleEarth')
    return tmp_path


def test_split_prints_the_check_and_config_lines(dota_dir, capsys):
    out = dota_dir / 'split'
    assert main(['dota', 'split', '--img-dirs', str(dota_dir / 'images'),
                 '--ann-dirs', str(dota_dir / 'labelTxt'), '--save-dir',
                 str(out), '--sizes', '256', '--gaps', '56']) == 0
    text = capsys.readouterr().out
    # 600 x 400, 256 px windows 200 apart: x 0, 200, 344; y 0, 144
    assert len(os.listdir(out / 'images')) == 6
    assert "mmrotate's DOTADataset loads it: 6 images" in text
    assert "split_dataset = dict(type='DOTADataset'" in text
    assert 'objects in the images: 2' in text


def test_base_json_gives_defaults_the_command_line_overrides(dota_dir,
                                                             capsys):
    cfg = dict(nproc=1, img_dirs=[str(dota_dir / 'images')],
               ann_dirs=[str(dota_dir / 'labelTxt')], sizes=[512],
               gaps=[112], rates=[1.0], img_rate_thr=0.6, iof_thr=0.7,
               no_padding=True, padding_value=[0],
               save_dir=str(dota_dir / 'from_json'), save_ext='.png')
    (dota_dir / 'ss.json').write_text(json.dumps(cfg))
    assert main(['dota', 'split', '--base-json', str(dota_dir / 'ss.json'),
                 '--save-dir', str(dota_dir / 'here'), '--classes',
                 'ship,harbor']) == 0
    assert not (dota_dir / 'from_json').exists()
    names = sorted(os.listdir(dota_dir / 'here' / 'images'))
    # 512 px windows; no padding: the patches end at the image
    assert names == ['P0001__512__0___0.png', 'P0001__512__88___0.png']
    assert cv2.imread(str(dota_dir / 'here' / 'images' / names[0])).shape \
        == (400, 512, 3)
    assert "classes = ('ship', 'harbor')" in capsys.readouterr().out


def test_errors_name_the_file_and_exit_1(dota_dir, capsys):
    assert main(['dota', 'split', '--save-dir', str(dota_dir / 'x')]) == 1
    assert 'give --img-dirs and --save-dir' in capsys.readouterr().err
    label = dota_dir / 'labelTxt' / 'P0001.txt'
    with open(label, 'a') as f:
        f.write('1 2 3 4 5 6 7 8 ship maybe\n')
    assert main(['dota', 'split', '--img-dirs', str(dota_dir / 'images'),
                 '--ann-dirs', str(dota_dir / 'labelTxt'), '--save-dir',
                 str(dota_dir / 'y')]) == 1
    assert f"{label}:5: difficult flag 'maybe'" in capsys.readouterr().err
    assert main(['dota', 'split', '--img-dirs', str(dota_dir / 'images'),
                 '--save-dir', str(dota_dir / 'z'), '--max-pixels',
                 '1000']) == 1
    assert 'P0001.png: 600 x 400 px' in capsys.readouterr().err
