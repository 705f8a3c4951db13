"""Is it safe to resume: the work dir's identity and the checkpoint a run
will resume from (or load), checked before it starts.

Work-dir identity: ``--resume`` continues from ``WORK_DIR/last_checkpoint``
whatever config wrote it. :func:`claim_work_dir` stamps WORK_DIR with a hash
of the resolved config (``WORK_DIR/.config_hash``); a work dir that holds a
checkpoint of another config, of an older version of this one, or of an
unknown one (no stamp) is moved aside to ``WORK_DIR.old-<time>`` first, so
training starts anew instead of resuming a foreign run
(``tools/claim_work_dir.py``, used by ``tools/run_demo.sh``, and the
ablation runner).

Checkpoints:

A run killed while mmengine writes a checkpoint leaves a truncated
``iter_<i>.pth`` (mmengine writes it in place, then updates
``last_checkpoint``). Resuming from such a file fails inside ``torch.load``
with "PytorchStreamReader failed reading zip archive: failed finding central
directory", after the dataset and model were built. :func:`check_resume`
checks the file first -- a cheap look at the end of the zip archive, no
unpickling -- and raises :class:`CorruptCheckpointError` naming the file and
the newest intact checkpoint beside it. ``tools/train.py`` calls it before
building the runner.
"""
import hashlib
import os
import os.path as osp
import re
import time
import zipfile
from glob import glob
from typing import List, Optional

__all__ = [
    'HASH_FILE', 'config_hash', 'claim_work_dir', 'CorruptCheckpointError',
    'checkpoint_problem', 'intact_checkpoints',
    'resume_target', 'check_checkpoint', 'check_resume'
]

# mmengine's CheckpointHook names: iter_<n>.pth / epoch_<n>.pth
_CKPT_NAME = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')
# torch.save's zip format starts with a zip local file header; the legacy
# (torch < 1.6) format is a pickle (protocol 2: b'\x80\x02').
_ZIP_MAGIC = b'PK\x03\x04'


HASH_FILE = '.config_hash'


def config_hash(config: str) -> str:
    """First 16 hex digits of the sha256 of the resolved config's text."""
    from mmengine.config import Config
    text = Config.fromfile(config).pretty_text
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def claim_work_dir(config: str, work_dir: str) -> Optional[str]:
    """Stamp ``work_dir`` for ``config``; move a foreign run aside.

    Returns:
        str: the path a foreign run was moved to, or None if nothing moved.
    """
    digest = config_hash(config)
    stamp = osp.join(work_dir, HASH_FILE)
    moved = None
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        old_digest = None
        if osp.isfile(stamp):
            with open(stamp) as f:
                old_digest = f.read().strip()
        if old_digest != digest:
            base = f'{work_dir.rstrip("/")}.old-' \
                   f'{time.strftime("%Y%m%d_%H%M%S")}'
            moved, suffix = base, 1
            while osp.exists(moved):  # two claims within one second
                moved, suffix = f'{base}~{suffix}', suffix + 1
            os.rename(work_dir, moved)
    os.makedirs(work_dir, exist_ok=True)
    with open(stamp, 'w') as f:
        f.write(digest + '\n')
    return moved


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or otherwise unreadable."""


def _is_local(path: str) -> bool:
    return '://' not in path


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be a complete checkpoint, or None if it looks
    intact.

    Checks existence, a non-zero size and, for torch's zip format, that the
    archive's central directory (written last) is present and that every
    member lies inside the file. Does not unpickle anything. Remote paths
    (``s3://``, ``https://``, ``torchvision://``) are not checked.
    """
    if not _is_local(path):
        return None
    if not osp.exists(path):
        return 'the file does not exist'
    if osp.isdir(path):
        return 'it is a directory, not a file'
    size = osp.getsize(path)
    if size == 0:
        return 'the file is empty (0 bytes)'
    with open(path, 'rb') as f:
        magic = f.read(4)
    if magic != _ZIP_MAGIC:
        if magic[:1] == b'\x80':
            return None  # legacy pickle format: torch.load will tell
        return ('corrupted: not a PyTorch checkpoint (the file starts like '
                'neither a zip archive nor a pickle)')
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        return (f'truncated: {size} bytes, and the zip archive has no '
                f'complete central directory ({err})')
    for info in infos:
        if info.header_offset + info.compress_size > size:
            return (f"truncated: {size} bytes, but member '{info.filename}' "
                    'ends past the end of the file')
    if not any(i.filename.endswith('data.pkl') for i in infos):
        return 'corrupted: the zip archive holds no data.pkl'
    return None


def intact_checkpoints(directory: str,
                       exclude: Optional[str] = None) -> List[str]:
    """``iter_<n>.pth`` / ``epoch_<n>.pth`` in ``directory`` that pass
    :func:`checkpoint_problem`, newest (largest n) first."""
    found = []
    for path in glob(osp.join(directory, '*.pth')):
        m = _CKPT_NAME.match(osp.basename(path))
        if m is None:
            continue
        if exclude is not None and osp.abspath(path) == osp.abspath(exclude):
            continue
        if checkpoint_problem(path) is None:
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found, reverse=True)]


def resume_target(cfg) -> Optional[str]:
    """The checkpoint ``Runner.load_or_resume`` will read for ``cfg``, as
    mmengine picks it: ``load_from`` if set, else with ``resume=True`` the
    path in ``work_dir/last_checkpoint`` (None if there is none; ``''``
    when the file is empty, which mmengine would try to load)."""
    if cfg.get('load_from'):
        return cfg.load_from
    if cfg.get('resume') and cfg.get('work_dir'):
        last = osp.join(cfg.work_dir, 'last_checkpoint')
        if osp.isfile(last):
            with open(last) as f:
                return f.read().strip()
    return None


def check_checkpoint(path: str, how: str = 'load') -> None:
    """Raise :class:`CorruptCheckpointError` if ``path`` is not an intact
    checkpoint, naming the newest intact one in the same directory.

    Args:
        path (str): the checkpoint file.
        how (str): 'resume' (``--resume``) or 'load' (``load_from``,
            ``tools/test.py``), for the wording of the message.
    """
    problem = checkpoint_problem(path)
    if problem is None:
        return
    directory = osp.dirname(osp.abspath(path))
    previous = intact_checkpoints(directory, exclude=path)
    if previous and how == 'resume':
        advice = (f"The newest intact checkpoint there is '{previous[0]}': "
                  f'resume from it with --resume {previous[0]}.')
    elif previous:
        advice = (f"The newest intact checkpoint there is '{previous[0]}'; "
                  'use it instead.')
    else:
        advice = (f"No intact iter_*/epoch_* checkpoint is in '{directory}'"
                  + ('; start again without --resume.'
                     if how == 'resume' else '.'))
    cause = (' It was probably being written when the run was interrupted.'
             if problem.startswith('truncated') else '')
    raise CorruptCheckpointError(
        f"cannot {how} from checkpoint '{path}': {problem}.{cause} {advice}")


def check_resume(cfg) -> None:
    """Check the checkpoint ``cfg`` will resume from or load, if any.

    Call after ``cfg.resume`` / ``cfg.load_from`` / ``cfg.work_dir`` are
    final and before ``Runner.from_cfg(cfg)``. Raises
    :class:`CorruptCheckpointError`; does nothing when there is nothing
    local to check.
    """
    target = resume_target(cfg)
    if target == '':
        # mmengine would resume from '' and fail inside torch.load
        last = osp.join(cfg.work_dir, 'last_checkpoint')
        raise CorruptCheckpointError(
            f"cannot resume: '{last}' is empty (the run was probably "
            'interrupted while writing it). ' + _pick_one(cfg.work_dir))
    if target is None or not _is_local(target):
        return
    how = 'resume' if cfg.get('resume') else 'load'
    if not cfg.get('load_from') and not osp.exists(target):
        # last_checkpoint names a file that is gone (work dir moved?)
        raise CorruptCheckpointError(
            f"cannot resume: '{osp.join(cfg.work_dir, 'last_checkpoint')}' "
            f"names '{target}', which does not exist (was the work dir "
            'moved or the file deleted?). ' + _pick_one(cfg.work_dir))
    check_checkpoint(target, how)


def _pick_one(work_dir: str) -> str:
    found = intact_checkpoints(work_dir)
    if found:
        return f'Resume explicitly with --resume {found[0]}.'
    return (f"No intact checkpoint is in '{work_dir}'; start again without "
            '--resume.')
