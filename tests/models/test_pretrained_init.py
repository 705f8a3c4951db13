"""init_cfg type 'CheckedPretrained': the weights a config asks for, or an
error that says how to get them; from scratch only with allow_scratch=True.

No internet here: the "published" files are written by the tests and served
by ``file://`` URLs whose names carry their SHA-256 prefix, as torchvision's
do (``resnet50-0676ba61.pth``); ``TORCHVISION_URLS`` is pointed at them."""
import hashlib
import logging
import os.path as osp
import sys

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.logging import MMLogger

from mmretina.models import pretrained_init
from mmretina.models.pretrained_init import PretrainedWeightsError

RECIPE = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
    'configs', 'retinanet_r50_fpn_gis_pretrained.py')


def resnet(checkpoint, **kw):
    init_cfg = dict(type='CheckedPretrained', checkpoint=checkpoint)
    init_cfg.update(kw.pop('init', {}))
    cfg = dict(type='ResNet', depth=18, base_channels=8, stem_channels=8,
               out_indices=(3, ), frozen_stages=1, norm_eval=True,
               init_cfg=init_cfg)
    cfg.update(kw)
    return MODELS.build(cfg)


def publish(state, folder, hash_prefix=None):
    """``state`` saved as ``folder/resnet18-<sha256[:8]>.pth`` (or with the
    given, wrong, prefix); returns its ``file://`` URL."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / 'tmp.pth'
    torch.save(state, tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = folder / f'resnet18-{hash_prefix or sha}.pth'
    tmp.rename(path)
    return 'file://' + str(path)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch.hub's cache in tmp_path, and no torchvision to import."""
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    monkeypatch.setitem(sys.modules, 'torchvision', None)
    return tmp_path / 'hub' / 'checkpoints'


class Lines(logging.Handler):

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def warnings():
    logger = MMLogger.get_current_instance()
    handler = Lines()
    logger.addHandler(handler)
    yield lambda: [r.getMessage() for r in handler.records
                   if r.levelno >= logging.WARNING]
    logger.removeHandler(handler)


def source_weights():
    torch.manual_seed(1)
    return resnet(None, init_cfg=None).state_dict()


def assert_loaded(net, state):
    for k, v in state.items():
        assert torch.equal(net.state_dict()[k], v), k
    # a pretrained backbone keeps the config's frozen stages and BN
    assert net.norm_eval and net.frozen_stages == 1


def test_local_weights_are_loaded(tmp_path):
    state = source_weights()
    path = tmp_path / 'r18.pth'
    torch.save(state, path)
    net = resnet(str(path))
    net.init_weights()
    assert_loaded(net, state)


def test_torchvision_name_fetched_from_its_url_without_torchvision(
        tmp_path, hub, monkeypatch, warnings):
    state = source_weights()
    url = publish(state, tmp_path / 'server')
    monkeypatch.setitem(pretrained_init.TORCHVISION_URLS, 'resnet50', url)
    net = resnet('torchvision://resnet50')
    net.init_weights()
    assert_loaded(net, state)
    assert warnings() == []
    # kept in torch.hub's cache: the next start reads it from there
    cached = hub / osp.basename(url)
    assert cached.is_file()
    (tmp_path / 'server' / osp.basename(url)).unlink()
    net = resnet('torchvision://resnet50')
    net.init_weights()
    assert_loaded(net, state)


def test_url_with_prefix_loads_that_part(tmp_path, hub):
    state = source_weights()
    url = publish({'state_dict': {f'backbone.{k}': v
                                  for k, v in state.items()}},
                  tmp_path / 'server')
    net = resnet(url, init=dict(prefix='backbone'))
    net.init_weights()
    assert_loaded(net, state)


def test_published_table_is_torchvisions():
    # the file the recipe starts from, hash in its name
    assert pretrained_init.weights_url('torchvision://resnet50') == (
        'https://download.pytorch.org/models/resnet50-0676ba61.pth')


@pytest.mark.parametrize('case', ['unreachable', 'wrong hash'])
def test_weights_that_cannot_be_had_stop_with_how_to_get_them(
        tmp_path, hub, monkeypatch, warnings, case):
    if case == 'unreachable':
        url = 'file://' + str(tmp_path / 'server' / 'resnet18-0123abcd.pth')
        reason = 'No such file'
    else:
        url = publish(source_weights(), tmp_path / 'server', 'deadbeef')
        reason = 'invalid hash value'
    monkeypatch.setitem(pretrained_init.TORCHVISION_URLS, 'resnet50', url)
    net = resnet('torchvision://resnet50')
    with pytest.raises(PretrainedWeightsError) as info:
        net.init_weights()
    msg = str(info.value)
    name = osp.basename(url)
    for part in ("ResNet: the pretrained weights 'torchvision://resnet50'",
                 reason, f'download {url}', 'curl -L --create-dirs -o',
                 str(hub / name), 'allow_scratch=True'):
        assert part in msg, (part, msg)
    if case == 'wrong hash':
        assert 'begins with deadbeef' in msg
    assert not (hub / name).exists()  # nothing half-checked is kept
    assert not any('FROM SCRATCH' in w for w in warnings())


def test_missing_file_or_unknown_name_stop_too(tmp_path, hub):
    missing = str(tmp_path / 'none.pth')
    net = resnet(missing)
    with pytest.raises(PretrainedWeightsError,
                       match=f"'{missing}'.*put the file there"):
        net.init_weights()
    # a torchvision name outside the published table needs torchvision
    net = resnet('torchvision://resnet50.imagenet1k_v2')
    with pytest.raises(PretrainedWeightsError,
                       match='install torchvision'):
        net.init_weights()


def test_recipe_stops_when_its_weights_cannot_be_had(tmp_path, hub,
                                                     monkeypatch):
    monkeypatch.setitem(
        pretrained_init.TORCHVISION_URLS, 'resnet50',
        'file://' + str(tmp_path / 'resnet50-0676ba61.pth'))
    cfg = Config.fromfile(RECIPE)
    model = MODELS.build(cfg.model)
    with pytest.raises(PretrainedWeightsError,
                       match='resnet50-0676ba61.pth'):
        model.init_weights()


def test_allow_scratch_one_warning_then_from_scratch(tmp_path, hub,
                                                     warnings):
    for ckpt in ('file://' + str(tmp_path / 'resnet18-0123abcd.pth'),
                 str(tmp_path / 'none.pth')):
        before = len(warnings())
        net = resnet(ckpt, init=dict(allow_scratch=True))
        net.init_weights()
        warn = warnings()[before:]
        assert len(warn) == 1, warn
        assert ckpt in warn[0] and 'FROM SCRATCH' in warn[0]
        assert 'allow_scratch=True' in warn[0]
        # scratch init (Kaiming convs, BN at identity), nothing frozen
        assert torch.all(net.bn1.weight == 1)
        assert not net.norm_eval and net.frozen_stages == -1
        assert all(p.requires_grad for p in net.parameters())
        net.train()
        assert net.bn1.training


def test_recipe_config_uses_it_and_ignores_crowd_regions():
    cfg = Config.fromfile(RECIPE)
    init_cfg = cfg.model.backbone.init_cfg
    assert init_cfg.type == 'CheckedPretrained'
    assert init_cfg.checkpoint == 'torchvision://resnet50'
    assert not init_cfg.get('allow_scratch', False)  # the weights, or stop
    assert cfg.model.train_cfg.assigner.ignore_iof_thr > 0
    assert 'mmretina.models.pretrained_init' in cfg.custom_imports.imports
