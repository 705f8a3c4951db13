"""mmretina.cli.browse_dataset (tools/analysis_tools/browse_dataset.py):
mmdet's own browse_dataset.py
(from its wheel) run on an mmretina config, writing augmented training
samples with their boxes drawn; --max-images and the headless default."""
import json
import os.path as osp
import sys

import numpy as np
import pytest
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'browse_dataset.py')


def write_black_coco(root, num_images=4, size=128):
    """Black images, one 48x40 box at x 40..88 (symmetric about the
    vertical centre line, so a horizontal flip leaves it in place)."""
    (root / 'images').mkdir(parents=True)
    images, anns = [], []
    for i in range(num_images):
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(
            root / 'images' / f'{i:02d}.png')
        images.append(dict(id=i + 1, file_name=f'{i:02d}.png', width=size,
                           height=size))
        anns.append(dict(id=i + 1, image_id=i + 1, category_id=1,
                         bbox=[40., 30., 48., 40.], area=1920., iscrowd=0))
    with open(root / 'ann.json', 'w') as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=1, name='square'),
                                   dict(id=2, name='bar')]), f)


def test_draws_training_samples_with_boxes(tmp_path, tools_helpers):
    h = tools_helpers
    write_black_coco(tmp_path / 'data')
    config = h.write_tiny_config(str(tmp_path / 'tiny.py'),
                                 str(tmp_path / 'data'))
    out = tmp_path / 'browse'
    proc = h.run_tool([sys.executable, TOOL, config, '--output-dir',
                       str(out), '--max-images', '2'])
    assert proc.returncode == 0, proc.stdout[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ['00.png', '01.png']  # --max-images 2 of 4
    img = np.asarray(Image.open(out / '00.png').convert('RGB')).astype(int)
    assert img.shape == (128, 128, 3)  # the pipeline's Resize output
    # the box's left and right edges are drawn (x = 40 and 88, middle of
    # its height), the far corner of the black image is untouched
    assert img[45:65, 38:43].sum(-1).max() > 100
    assert img[45:65, 86:91].sum(-1).max() > 100
    assert img[100:128, 0:30].sum() == 0


def test_without_output_dir_is_an_error():
    from mmretina.cli import browse_dataset as tool
    with pytest.raises(SystemExit, match='give --output-dir DIR'):
        tool.main(['any_config.py'])
    with pytest.raises(SystemExit, match='--max-images must be >= 1'):
        tool.main(['any_config.py', '--output-dir', 'x', '--max-images', '0'])
