"""mmretina.engine.resume: a truncated, empty or missing checkpoint is
refused before training, naming it and the newest intact one beside it.
(The kill-and-resume run through tools/train.py is in
tests/tools/test_train_robustness.py.)"""
import pytest
import torch
from mmengine.config import Config

from mmretina.engine.resume import (CorruptCheckpointError,
                                    check_checkpoint, check_resume,
                                    checkpoint_problem, intact_checkpoints,
                                    resume_target)


def save(path, legacy=False):
    torch.save(
        dict(meta=dict(iter=1), state_dict=dict(w=torch.arange(2000.))),
        str(path),
        _use_new_zipfile_serialization=not legacy)
    return path


def truncate(path, size):
    data = path.read_bytes()
    path.write_bytes(data[:size])
    return len(data)


@pytest.fixture
def work_dir(tmp_path):
    """iter_2, iter_4 and iter_10 intact; last_checkpoint -> iter_10."""
    for i in (2, 4, 10):
        save(tmp_path / f'iter_{i}.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_10.pth'))
    return tmp_path


def resume_cfg(work_dir, resume=True, load_from=None):
    return Config(dict(work_dir=str(work_dir), resume=resume,
                       load_from=load_from))


def test_intact_checkpoints_pass(tmp_path):
    assert checkpoint_problem(str(save(tmp_path / 'a.pth'))) is None
    # torch < 1.6 format: a pickle, which only torch.load can check
    assert checkpoint_problem(str(save(tmp_path / 'b.pth', True))) is None
    torch.load(str(tmp_path / 'a.pth'), weights_only=True)


@pytest.mark.parametrize('keep', [-1, -22, 0.5, 100, 4])
def test_truncated_anywhere_is_detected(tmp_path, keep):
    path = save(tmp_path / 'iter_6.pth')
    size = path.stat().st_size
    cut = int(size * keep) if isinstance(keep, float) else (
        size + keep if keep < 0 else keep)
    truncate(path, cut)
    problem = checkpoint_problem(str(path))
    assert problem is not None and problem.startswith(
        f'truncated: {cut} bytes')
    with pytest.raises(Exception):  # what torch would have said
        torch.load(str(path), weights_only=True)


@pytest.mark.parametrize('content,problem', [
    (b'', 'the file is empty (0 bytes)'),
    (b'<html>404 Not Found</html>',
     'corrupted: not a PyTorch checkpoint (the file starts like neither a '
     'zip archive nor a pickle)'),
])
def test_empty_or_foreign_file(tmp_path, content, problem):
    path = tmp_path / 'x.pth'
    path.write_bytes(content)
    assert checkpoint_problem(str(path)) == problem


def test_missing_and_directory(tmp_path):
    assert checkpoint_problem(str(tmp_path / 'no.pth')) == \
        'the file does not exist'
    assert checkpoint_problem(str(tmp_path)) == \
        'it is a directory, not a file'
    assert checkpoint_problem('s3://bucket/iter_4.pth') is None


def test_intact_checkpoints_newest_first_by_number(work_dir):
    truncate(work_dir / 'iter_4.pth', 100)
    (work_dir / 'best_coco_bbox_mAP.pth').write_bytes(b'')
    assert intact_checkpoints(str(work_dir)) == [
        str(work_dir / 'iter_10.pth'),
        str(work_dir / 'iter_2.pth')
    ]


def test_resume_from_truncated_last_checkpoint_names_previous(work_dir):
    size = truncate(work_dir / 'iter_10.pth', 1000)
    assert size > 1000
    with pytest.raises(CorruptCheckpointError) as exc:
        check_resume(resume_cfg(work_dir))
    assert str(exc.value) == (
        f"cannot resume from checkpoint '{work_dir / 'iter_10.pth'}': "
        'truncated: 1000 bytes, and the zip archive has no complete central '
        'directory (File is not a zip file). It was probably being written '
        'when the run was interrupted. The newest intact checkpoint there is '
        f"'{work_dir / 'iter_4.pth'}': resume from it with --resume "
        f"{work_dir / 'iter_4.pth'}.")
    # the previous checkpoint is untouched and passes
    check_resume(resume_cfg(work_dir, load_from=str(work_dir / 'iter_4.pth')))


def test_explicit_resume_path_and_load_from(work_dir):
    truncate(work_dir / 'iter_4.pth', 10)
    with pytest.raises(CorruptCheckpointError,
                       match=r"cannot resume from checkpoint '.*iter_4.pth'"
                       r".*newest intact checkpoint there is '.*iter_10"
                       r".pth'"):
        check_resume(
            resume_cfg(work_dir, load_from=str(work_dir / 'iter_4.pth')))
    with pytest.raises(CorruptCheckpointError,
                       match=r"cannot load from checkpoint '.*iter_4.pth'.*"
                       r"The newest intact checkpoint there is '.*"
                       r"iter_10.pth'; use it instead.$"):
        check_resume(resume_cfg(work_dir, resume=False,
                                load_from=str(work_dir / 'iter_4.pth')))


def test_last_checkpoint_naming_a_moved_file(work_dir):
    (work_dir / 'last_checkpoint').write_text('/old/place/iter_10.pth')
    with pytest.raises(CorruptCheckpointError) as exc:
        check_resume(resume_cfg(work_dir))
    assert str(exc.value) == (
        f"cannot resume: '{work_dir / 'last_checkpoint'}' names "
        "'/old/place/iter_10.pth', which does not exist (was the work dir "
        'moved or the file deleted?). Resume explicitly with --resume '
        f"{work_dir / 'iter_10.pth'}.")


def test_empty_last_checkpoint_names_the_newest_intact_one(work_dir):
    """A kill between creating last_checkpoint and writing it leaves it
    empty; mmengine would then resume from ''."""
    (work_dir / 'last_checkpoint').write_text('')
    with pytest.raises(CorruptCheckpointError) as exc:
        check_resume(resume_cfg(work_dir))
    assert str(exc.value) == (
        f"cannot resume: '{work_dir / 'last_checkpoint'}' is empty (the run "
        'was probably interrupted while writing it). Resume explicitly with '
        f"--resume {work_dir / 'iter_10.pth'}.")
    # an explicit checkpoint does not read last_checkpoint
    check_resume(resume_cfg(work_dir, load_from=str(work_dir / 'iter_4.pth')))


def test_no_intact_checkpoint_left(tmp_path):
    path = tmp_path / 'iter_2.pth'
    path.write_bytes(b'PK\x03\x04 cut')
    with pytest.raises(CorruptCheckpointError,
                       match=r"No intact iter_\*/epoch_\* checkpoint is in "
                       r"'.*'; start again without --resume."):
        check_checkpoint(str(path), 'resume')


def test_nothing_to_check(tmp_path):
    # fresh run, auto-resume without a checkpoint yet, remote load_from
    check_resume(resume_cfg(tmp_path, resume=False))
    check_resume(resume_cfg(tmp_path))
    check_resume(
        resume_cfg(tmp_path, resume=False,
                   load_from='https://download.openmmlab.com/x.pth'))
    assert resume_target(resume_cfg(tmp_path)) is None
