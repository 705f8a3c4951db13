"""Every ``--help`` says what its parser does (issue 30, item 1): the help
texts of every ``mmretina`` command (subcommands included), of the other
modules of mmretina/cli with a ``main`` and of every tools/*.py, checked
against the parsers and, where a test can observe it, the code behind them.
(That each ``--help`` example parses is tests/cli/test_main.py's.)

Per parser (:func:`check_parser`):

* **defaults**: a default a help states (``default X``, ``default: X``,
  ``defaults to X``, ``X (default)``, ``X for <case>``) equals the parser's
  default; where the parser's default is None (decided later), it equals
  the default the code is observed to use (:data:`RESOLVED`), or the help
  is listed in :data:`UNOBSERVED` with why it cannot be observed cheaply;
* **values**: each value a help enumerates (``auto (...), 0 (...) or N``),
  each ``e.g. X`` and each ``--flag VALUE`` named in a text is accepted by
  the flag's ``type`` / ``choices``; a help that names two or more of its
  flag's choices names all of them, and a list holding a choice holds
  only choices;
* **flags**: each ``--flag`` named in a help, a description or an epilog is
  an option of that parser (or of its subcommands, or of mmdet's script it
  passes the rest to), or of the program :data:`FOREIGN` names; the
  epilogs' ``python tools/...`` / ``mmretina-*`` command lines are checked
  by the docs' command checker (tests/docs/test_doc_commands.py);
* **formats**: a parser writing GIS layers (``--format``) offers exactly the
  writers' :data:`~mmretina.geo.writers.VECTOR_FORMATS`, and a text naming
  some of them names the default one (GeoPackage, observed);
* **shared flags** (mmretina/cli/options.py) keep their type, default,
  choices and help wherever they appear; a command's own flag of the same
  name (another meaning) is listed in :data:`LOCAL_MEANINGS`;
* a description or help does not stop mid-sentence.

Observed claims: ``--amp`` (bfloat16 autocast on a CPU; refused where the
CPU lacks native bf16), ``--fuse-conv-bn`` (CPU and pytorch backend only),
``--keep-crs`` (the formats it changes), the default format, bands and
percentiles.

:func:`test_checker_reports_each_kind_of_mistake` feeds the checker a
parser with one mistake of each kind, so that it cannot pass by seeing
nothing.
"""
import argparse
import functools
import importlib
import importlib.util
import os
import os.path as osp
import pkgutil
import re
import sys
import tempfile
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest

from mmretina.cli.main import COMMANDS, _parser as dispatch_parser

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _doc_commands():
    """tests/docs/test_doc_commands.py (its parser capture and command
    checker), the module pytest collects if it is loaded already."""
    name = 'test_doc_commands'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, osp.join(REPO, 'tests', 'docs', 'test_doc_commands.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


dc = _doc_commands()


# ------------------------------------------------------------ the programs
def _leaves(commands=COMMANDS, path=()) -> Iterator[Tuple[str, str]]:
    for name, entry in commands.items():
        if isinstance(entry, dict):
            yield from _leaves(entry, path + (name, ))
        else:
            yield 'mmretina ' + ' '.join(path + (name, )), entry[0]


COMMAND_MODULES = dict(_leaves())  # 'mmretina predict' -> module
GROUPS = ['mmretina'] + [f'mmretina {g}' for g, e in COMMANDS.items()
                         if isinstance(e, dict)]
# modules of mmretina/cli run as `python -m` only (no command)
OTHER_MODULES = sorted(
    f'mmretina.cli.{m.name}'
    for m in pkgutil.iter_modules([osp.join(REPO, 'mmretina', 'cli')])
    if f'mmretina.cli.{m.name}' not in COMMAND_MODULES.values()
    and m.name not in ('main', 'options'))
TOOLS = sorted(
    osp.relpath(osp.join(root, f), REPO)
    for root, _, files in os.walk(osp.join(REPO, 'tools')) for f in files
    if f.endswith('.py'))


def program(name: str):
    """The :class:`Program` (parser, forward parser) of ``mmretina X``, a
    module name or a tools/ path; a group's dispatch parser."""
    if name in GROUPS:
        commands = COMMANDS if name == 'mmretina' else COMMANDS[name.split()
                                                                [1]]
        return dc.Program(dispatch_parser(name, commands))
    if name in COMMAND_MODULES:
        return dc.module_program(COMMAND_MODULES[name])
    if name.startswith('tools/'):
        return dc.script_program(name)
    return dc.module_program(name)


# ------------------------------------------------- what the code is seen to
# do where a parser's default is None (decided after parsing). Each
# function observes the code path that decides it.
class OneBox:
    """A backend as :class:`~mmretina.inference.TiledInferencer` runs one
    (images in, ``InstanceData`` out) that finds one 4 px box per window:
    which files a run writes does not depend on the model."""
    classes = ('tree', )

    def __call__(self, imgs):
        import torch
        from mmengine.structures import InstanceData
        out = []
        for _ in imgs:
            inst = InstanceData()
            inst.bboxes = torch.tensor([[4., 4., 8., 8.]])
            inst.scores = torch.tensor([0.9])
            inst.labels = torch.tensor([0])
            out.append(inst)
        return out


def predict_run(out_dir: str, georeferenced: bool = True, **kw) -> str:
    """``InferenceRun`` (what ``mmretina predict`` runs) over one 16 px
    raster, EPSG:32617 or without georeferencing, writing into
    ``out_dir``; ``kw``: its output options (``fmt``, ``keep_crs``)."""
    rasterio = pytest.importorskip('rasterio')
    pytest.importorskip('geopandas')
    from rasterio.transform import from_origin

    from mmretina.inference import InferenceRun, TiledInferencer
    tif = osp.join(out_dir, 'in', 'ortho.tif')
    os.makedirs(osp.dirname(tif), exist_ok=True)
    geo = dict(crs='EPSG:32617', transform=from_origin(
        500000, 4000000, 0.5, 0.5)) if georeferenced else {}
    with rasterio.open(tif, 'w', driver='GTiff', width=16, height=16,
                       count=3, dtype='uint8', **geo) as ds:
        ds.write(np.full((3, 16, 16), 100, np.uint8))
    InferenceRun(TiledInferencer(OneBox(), tile=16, progress=False),
                 out_dir=out_dir, log=lambda line: None, progress=False,
                 **kw).run([tif])
    return out_dir


def layers_written(out_dir: str) -> Dict[str, str]:
    """format -> the layer file a run wrote (detections.csv, the table
    every run writes, left out)."""
    from mmretina.geo.writers import VECTOR_FORMATS
    return {
        k: osp.join(out_dir, f)
        for f in os.listdir(out_dir) if f != 'detections.csv'
        for k, (_, ext) in VECTOR_FORMATS.items() if f.endswith(ext)
    }


@functools.lru_cache()
def observed_default_format() -> Optional[str]:
    """The format ``mmretina predict``'s run writes a georeferenced
    raster's layer in without ``--format`` (None: no layer, or several)."""
    with tempfile.TemporaryDirectory() as tmp:
        found = list(layers_written(predict_run(tmp)))
    return found[0] if len(found) == 1 else None


@functools.lru_cache()
def observed_default_bands(count: int = 3) -> Tuple[int, ...]:
    """The bands ``RasterSource`` (what predict, evaluate and convert
    raster read with) reads from a ``count``-band raster without
    ``bands``."""
    rasterio = pytest.importorskip('rasterio')
    from mmretina.geo.raster import RasterSource
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'bands.tif')
        with rasterio.open(path, 'w', driver='GTiff', width=8, height=8,
                           count=count, dtype='uint8') as ds:
            ds.write(np.zeros((count, 8, 8), np.uint8))
        return tuple(RasterSource(path).bands)


def observed_ablate_epochs() -> int:
    from mmretina.cli.ablate import parse_args
    return parse_args(['list']).epochs


# flag or (program, flag) -> the default observed
RESOLVED: Dict[object, Callable[[], object]] = {
    '--format': observed_default_format,
    '--bands': observed_default_bands,
    ('mmretina analyze ablate', '--epochs'): observed_ablate_epochs,
}
# (program, flag) -> why the stated default is not observed here
UNOBSERVED = {
    ('mmretina test', '--backend'):
    'main() runs an exported model with `args.backend or '
    "'onnxruntime'`: observing it takes an exported model and a data set",
    ('mmretina convert from-torchvision', '--bn-eps'):
    'the converter picks the eps from the weights it converts: observing '
    'it takes a torchvision checkpoint',
}
# (program, flag) -> why the command's flag of a shared flag's name is its
# own (mmretina/cli/options.py's flags mean inference's windows, raster
# reading and device)
LOCAL_MEANINGS = {
    ('mmretina convert raster', '--overlap'):
    'training chips overlap (px or a fraction of --chip), default 0',
    ('mmretina convert raster', '--bands'):
    "inference's rule, without a config to take `bands` from",
    ('mmretina convert raster', '--scale'):
    "inference's rule, without a config to take `scale` from",
    ('mmretina convert raster', '--gsd'):
    "chips are cut at each raster's own GSD unless one is asked for "
    '(default off), and there is no model to take it from',
    ('mmretina convert deepforest', '--overlap'):
    'px between the training tiles of the DeepForest data set',
    ('mmretina convert from-torchvision', '--score-thr'):
    "written into the converted config (torchvision's score_thresh)",
    ('mmretina convert from-torchvision', '--gsd'):
    'written into the converted config (the GSD the model was trained at)',
    ('mmretina convert from-torchvision', '--tile'):
    'written into the converted config (the window the model reads)',
    ('mmretina analyze plot-layer', '--bands'):
    'a preview read without a model config',
    ('mmretina analyze plot-layer', '--scale'):
    'a preview read without a model config',
    ('mmretina analyze plot-layer', '--score-thr'):
    "a drawing filter on a layer's score column, default 0 (all drawn)",
    ('mmretina analyze loss-cdf', '--device'):
    'defaults to cpu, not to cuda:0 where a GPU is (the help says so)',
}
# program -> {flag its texts name: the program that has it}
FOREIGN = {
    'mmretina': {'--resume': 'mmretina train'},  # claim-work-dir's line
    'mmretina claim-work-dir': {'--resume': 'mmretina train'},
}
# flags whose texts name only the formats they act on (observed by
# test_keep_crs_help_names_the_formats_it_changes)
FORMAT_SPECIFIC = {'--keep-crs'}

# words after which a sentence is not finished; words after a flag that
# are not its value
STOPWORDS = {
    'a', 'an', 'the', 'and', 'or', 'of', 'to', 'at', 'in', 'on', 'for',
    'with', 'by', 'from', 'as', 'if', 'when', 'than', 'that', 'its', 'their',
    'per', 'into', 'without', 'but', 'whose', 'which'
}
UNITS = {'metres', 'meters', 'm', 'px', 'pixels', 'seconds', 's', 'degrees'}
# GIS layer formats by the names a text gives them (CSV is left out: it is
# also the detections table every run writes)
FORMAT_NAMES = {
    'gpkg': ('GeoPackage', 'gpkg'),
    'shp': ('Shapefile', 'shp'),
    'geojson': ('GeoJSON', 'geojson'),
    'fgb': ('FlatGeobuf', 'fgb'),
}
NUMBER = re.compile(r'[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?')


# -------------------------------------------------------------- the texts
def expanded_help(parser: argparse.ArgumentParser,
                  action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ''
    return parser._get_formatter()._expand_help(action)


def flag_name(action: argparse.Action) -> str:
    return max(action.option_strings, key=len, default=action.dest)


def parsers_of(parser, prog) -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    """The parser and its subcommands' parsers, with their names."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers_of(sub, f'{prog} {name}')


def texts_of(parser) -> List[Tuple[str, str, Optional[argparse.Action]]]:
    """(where, text, action or None) of a parser's description, epilog,
    helps and subcommand lines."""
    texts = [('description', parser.description or '', None),
             ('epilog', parser.epilog or '', None)]
    for action in parser._actions:
        texts.append((flag_name(action), expanded_help(parser, action),
                      action))
        if isinstance(action, argparse._SubParsersAction):
            texts += [(f'command {c.dest}', c.help or '', None)
                      for c in action._choices_actions]
    return texts


def split_commands(text: str) -> Tuple[str, List[str]]:
    """(prose, command lines) of a description / epilog: lines that run
    ``python``, ``bash``, ``mmretina`` or ``tools/...`` (continuations
    joined) are commands; ``mmretina <command>`` lines are left out (their
    parsing is tests/cli/test_main.py's)."""
    prose, commands = [], []
    lines = (text or '').split('\n')
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        word = (line.split() or [''])[0]
        if re.match(r'(python3?|bash|mmretina(-[\w-]+)?|tools/\S+\.(py|sh)|'
                    r'from|import)$', word):
            while line.rstrip().endswith('\\') and i < len(lines):
                line = line.rstrip()[:-1] + ' ' + lines[i].strip()
                i += 1
            if word not in ('mmretina', 'from', 'import'):
                commands.append(line.strip())
            continue
        prose.append(line)
    return '\n'.join(prose), commands


def top_level(text: str, sep: str) -> List[str]:
    """``text`` split at ``sep`` (a regex) outside parentheses."""
    parts, depth, start = [], 0, 0
    i = 0
    while i < len(text):
        ch = text[i]
        depth += {'(': 1, ')': -1}.get(ch, 0)
        m = re.compile(sep).match(text, i) if depth == 0 else None
        if m and m.end() > i:
            parts.append(text[start:i])
            start = i = m.end()
            continue
        i += 1
    parts.append(text[start:])
    return parts


def stated_defaults(help_text: str, parser=None, action=None) -> List[str]:
    """The literal defaults a help states: ``default 0.25``, ``(default:
    onnxruntime)``, ``defaults to 3``, ``gpkg for <case>``; and, for a flag
    with a type or choices, ``auto (default: ...)`` / ``one-based (VOC,
    default)`` where the word is a value the flag takes. A described
    default (``default: the model's``, ``default 5 chips``, ``cuda:0 if
    available``) is no literal."""
    out = []
    for m in re.finditer(r'\b(?:defaults? to|default:?)\s+([^;)]*)',
                         help_text):
        value = re.split(r':\s|, (?!\d)', m.group(1))[0].strip()
        value = value.rstrip('.')
        qualified = re.match(r'(\S+) for ', value)
        if qualified:
            value = qualified.group(1)
        if literal(value):
            out.append(value)
    typed = action is not None and (action.type is not None
                                    or action.choices is not None)
    for m in re.finditer(
            r'(?<![\w-])([\w.-]+) \((?:[^()]*, )?default[:)]', help_text):
        if (typed and not dc.is_placeholder(m.group(1))
                and value_problem(parser, action, m.group(1)) is None):
            out.append(m.group(1))
    return out


def literal(value: str) -> bool:
    """A value as a user types it: numbers (``1e-5``, ``1,2,3``, ``104 116
    124``) or one word (``gpkg``, ``.png``, ``off``)."""
    tokens = [t for t in re.split(r'[ ,]+', value) if t]
    if not tokens or value.startswith('--') or "'" in value:
        return False
    if all(NUMBER.fullmatch(t) for t in tokens):
        return True
    return len(tokens) == 1 and re.fullmatch(r'[\w.+:-]+', tokens[0]) is not \
        None and not dc.is_placeholder(tokens[0])


def same_value(stated: str, value) -> bool:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    tokens = [t for t in re.split(r'[ ,]+', stated) if t]
    if len(tokens) != len(values):
        return False
    for t, v in zip(tokens, values):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not NUMBER.fullmatch(t) or float(t) != float(v):
                return False
        elif str(v) != t:
            return False
    return True


def enumerated_values(help_text: str) -> List[str]:
    """Values a help lists as ``auto (...), 0 (...) or N``: after the first
    ``: ``, items each of one word with an explanation in parentheses (or a
    number); ``N``, ``metres``... without one are placeholders."""
    text = re.sub(r',?\s*e\.g\.,?\s+\S+', '', help_text)
    text = top_level(text, r';')[0]
    parts = top_level(text, r': ')
    if len(parts) < 2:
        return []
    items = top_level(parts[1], r',? or |, ')
    if len(items) < 2:
        return []
    values = []
    for item in items:
        m = re.fullmatch(r'(\S+)(\s+\(.*\))?', item.strip(), re.S)
        if not m or m.group(1).startswith('-'):
            return []
        if m.group(2) or NUMBER.fullmatch(m.group(1)):
            values.append(m.group(1))
    return values


def examples(help_text: str) -> List[str]:
    return [m.group(1).rstrip('.,;:)`')
            for m in re.finditer(r'\be\.g\.,?\s+([^\s`]+)', help_text)]


def value_problem(parser, action, value: str) -> Optional[str]:
    """Why ``action``'s parser refuses ``value`` (None: accepted)."""
    for v in value.split('|'):
        if not v or dc.is_placeholder(v):
            continue
        try:
            parser._check_value(action, parser._get_value(action, v))
        except argparse.ArgumentError as e:
            return f'{v!r}: {e.message}'
        except Exception as e:  # a type function's own error
            return f'{v!r}: {e}'
    return None


def formats_named(text: str) -> set:
    return {
        key for key, names in FORMAT_NAMES.items()
        if any(re.search(rf'(?<![\w-]){n}(?![\w-])', text) for n in names)
    }


def shared_reference() -> Dict[str, Tuple[argparse.Action, str]]:
    """options.py's flags: option string -> (action, help as a regex;
    ``--score-thr``'s help names what the command does with the score)."""
    from mmretina.cli import options
    ref = argparse.ArgumentParser()
    mark = 'WHAT_IT_DOES'
    options.add_window_args(ref)
    options.add_raster_args(ref)
    options.add_device_arg(ref)
    options.add_score_thr_arg(ref, mark)
    out = {}
    for action in ref._actions[1:]:
        pattern = re.escape(expanded_help(ref, action)).replace(mark, '.+')
        for opt in action.option_strings:
            out[opt] = (action, pattern)
    return out


def _same_action(a: argparse.Action, ref: argparse.Action, helps: str,
                 pattern: str) -> bool:
    return (set(a.option_strings) == set(ref.option_strings)
            and a.default == ref.default and a.type is ref.type
            and list(a.choices or []) == list(ref.choices or [])
            and a.nargs == ref.nargs and a.dest == ref.dest
            and re.fullmatch(pattern, helps) is not None)


# ----------------------------------------------------------- the checker
def check_parser(name: str,
                 parser: argparse.ArgumentParser,
                 forward: Optional[argparse.ArgumentParser] = None,
                 resolved=None,
                 unobserved=None,
                 local=None,
                 foreign=None,
                 shared=None,
                 default_format: Callable[[], Optional[str]] = None
                 ) -> List[str]:
    """The problems of one program's help texts, ``program: what``."""
    resolved = RESOLVED if resolved is None else resolved
    unobserved = UNOBSERVED if unobserved is None else unobserved
    local = LOCAL_MEANINGS if local is None else local
    foreign = FOREIGN.get(name, {}) if foreign is None else foreign
    shared = shared_reference() if shared is None else shared
    default_format = default_format or observed_default_format
    problems = []
    subparsers = list(parsers_of(parser, name))
    known = {}
    for _, p in subparsers + ([(None, forward)] if forward else []):
        for opt, action in p._option_string_actions.items():
            known.setdefault(opt, (p, action))
    for prog, p in subparsers:
        texts = texts_of(p)
        problems += _check_texts(prog, p, texts, known, foreign)
        problems += _check_defaults(prog, p, resolved, unobserved)
        problems += _check_shared(prog, p, shared, local)
        problems += _check_formats(prog, p, texts, default_format)
    return problems


def _check_texts(prog, parser, texts, known, foreign) -> List[str]:
    problems = []
    for where, text, action in texts:
        # command lines in a description or an epilog (a help is prose)
        prose, commands = split_commands(text) if action is None else (
            text, [])
        if commands:
            page = '```bash\n' + '\n'.join(commands) + '\n```\n'
            problems += [
                f'{prog}: {where}: {p.split(": ", 1)[1]}'
                for p in dc.check_page(f'{prog} --help', page)
            ]
        problems += _check_flags_named(prog, where, prose, known, foreign)
        if action is None and where != 'description':
            continue
        problems += _mid_sentence(prog, where, text)
        if action is not None:
            problems += _check_values(prog, where, text, parser, action)
    return problems


def _check_flags_named(prog, where, prose, known, foreign) -> List[str]:
    """Each ``--flag`` named is known; a value given it is accepted."""
    problems = []
    for m in re.finditer(
            r'(?<![\w-])(--[a-z][\w-]*)(?:[ =](?!-)([^\s;()`\'"]+))?',
            prose):
        flag, value = m.group(1), (m.group(2) or '').rstrip('.,:')
        if flag not in known:
            other = foreign.get(flag)
            if other is None:
                problems.append(f'{prog}: {where} names {flag}, which this '
                                'parser does not have')
            elif flag not in program(other).parser._option_string_actions:
                problems.append(f'{prog}: {where} names {flag} of {other}, '
                                f'which has no {flag}')
            continue
        # a value is checked where it reads as one: quoted or in
        # parentheses (``--tile 0``, (--backend pytorch)), or with a digit
        # or a separator (--split 0.8,0.2); "the --backend runtime" or
        # "--point-radius metres" is prose
        before = prose[m.start() - 1:m.start()]
        owner, target = known[flag]
        if (value and target.nargs != 0
                and (before in ('(', '`') or re.search(r'[\d.,:=/|]', value))
                and value.lower() not in STOPWORDS and value not in UNITS
                and re.search(r'\w', value)):
            why = value_problem(owner, target, value)
            if why:
                problems.append(f'{prog}: {where} gives {flag} {why}')
    return problems


def _check_values(prog, where, text, parser, action) -> List[str]:
    """The values a help offers are its flag's; its lists of choices are
    whole and hold only choices."""
    problems = []
    for value in enumerated_values(text) + examples(text):
        why = value_problem(parser, action, value)
        if why:
            problems.append(f'{prog}: {where}: the help offers {why}')
    choices = [c for c in (action.choices or []) if isinstance(c, str)]
    if not choices or isinstance(action, argparse._SubParsersAction):
        return problems
    named = [c for c in choices
             if re.search(rf'(?<![\w-]){re.escape(c)}(?![\w-])', text)]
    if 1 < len(named) < len(choices):
        missing = [c for c in choices if c not in named]
        problems.append(f'{prog}: {where}: the help lists '
                        f'{", ".join(named)} but not {", ".join(missing)}')
    sep = r',? or |, |\s*\|\s*'
    for m in re.finditer(rf'[\w.-]+(?:(?:{sep})[\w.-]+)+', text):
        items = re.split(sep, m.group(0))
        if not any(i in choices for i in items):
            continue
        for i in items:
            if (i not in choices and re.fullmatch(r'[a-z0-9._-]+', i)
                    and i not in STOPWORDS):
                problems.append(f'{prog}: {where}: the help lists {i!r}, '
                                f'which is not a choice '
                                f'({", ".join(choices)})')
    return problems


def _mid_sentence(prog, where, text) -> List[str]:
    words = re.findall(r"[\w']+|\S", text.strip())
    if words and words[-1].lower() in STOPWORDS:
        return [f'{prog}: {where} stops mid-sentence: '
                f'"...{text.strip()[-40:]}"']
    return []


def _check_defaults(prog, parser, resolved, unobserved) -> List[str]:
    problems = []
    for action in parser._actions:
        if action.nargs == 0 or isinstance(action,
                                           argparse._SubParsersAction):
            continue  # a switch's "default" is what happens without it
        flag = flag_name(action)
        for stated in stated_defaults(
                expanded_help(parser, action), parser, action):
            if action.default is not None:
                if not same_value(stated, action.default):
                    problems.append(
                        f'{prog}: {flag}: the help says default {stated}, '
                        f'the parser\'s is {action.default!r}')
                continue
            observe = resolved.get((prog, flag), resolved.get(flag))
            if observe is not None:
                seen = observe()
                if not same_value(stated, seen):
                    problems.append(
                        f'{prog}: {flag}: the help says default {stated}, '
                        f'the code uses {seen!r}')
            elif (prog, flag) not in unobserved:
                problems.append(
                    f'{prog}: {flag}: the help says default {stated}, the '
                    'parser\'s is None (decided later): observe it in '
                    'RESOLVED, list it in UNOBSERVED with why, or describe '
                    'it instead of a value')
    return problems


def _check_shared(prog, parser, shared, local) -> List[str]:
    problems, seen = [], set()
    for action in parser._actions:
        opts = [o for o in action.option_strings if o in shared]
        if not opts or id(action) in seen:
            continue
        seen.add(id(action))
        ref, pattern = shared[opts[0]]
        flag = flag_name(ref)
        same = _same_action(action, ref, expanded_help(parser, action),
                            pattern)
        if not same and (prog, flag) not in local:
            problems.append(
                f'{prog}: {flag} is not mmretina/cli/options.py\'s (default '
                f'{action.default!r}, help "{expanded_help(parser, action)}"'
                '): add it with options.py, or list it in LOCAL_MEANINGS '
                'with what it means here')
        elif same and (prog, flag) in local:
            problems.append(f'{prog}: {flag} is options.py\'s: drop it from '
                            'LOCAL_MEANINGS')
    return problems


def _check_formats(prog, parser, texts, default_format) -> List[str]:
    from mmretina.geo.writers import VECTOR_FORMATS
    fmt = parser._option_string_actions.get('--format')
    if fmt is None or not set(fmt.choices or ()) & set(VECTOR_FORMATS):
        return []
    problems = []
    if sorted(fmt.choices) != sorted(VECTOR_FORMATS):
        problems.append(
            f'{prog}: --format offers {", ".join(sorted(fmt.choices))}; '
            f'the writers write {", ".join(sorted(VECTOR_FORMATS))}')
    default = default_format()
    for where, text, _ in texts:
        named = formats_named(text)
        if (named and default not in named and where not in FORMAT_SPECIFIC
                and named != set(FORMAT_NAMES)):
            problems.append(
                f'{prog}: {where} names {", ".join(sorted(named))} as the '
                f'GIS output but not {default}, the format written by '
                'default')
    return problems


# ------------------------------------------------------------------ tests
ALL = sorted(COMMAND_MODULES) + GROUPS + OTHER_MODULES


@pytest.fixture(autouse=True)
def _local_rank(monkeypatch):
    # train / test set LOCAL_RANK while parsing when it is unset
    monkeypatch.setenv('LOCAL_RANK', '0')


@pytest.mark.parametrize('name', ALL)
def test_help_texts_match_the_parser(name):
    prog = program(name)
    problems = check_parser(name, prog.parser, prog.forward)
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('path', TOOLS)
def test_tools_script_help_is_checked(path):
    """A tools/ shim runs a command's module (its parser is checked under
    the command's name); a script with its own parser is checked here."""
    prog = program(path)
    covered = [n for n in ALL if program(n) is prog]
    if covered:
        return
    problems = check_parser(path, prog.parser, prog.forward)
    assert not problems, '\n'.join(problems)


def test_allow_lists_are_current():
    """Each UNOBSERVED, LOCAL_MEANINGS and FOREIGN entry still names a help
    that needs it (a stale one would hide a later mistake)."""
    problems = []
    for (name, flag) in UNOBSERVED:
        p = dict(parsers_of(program(name).parser, name)).get(name)
        action = p and p._option_string_actions.get(flag)
        if not action or action.default is not None or not stated_defaults(
                expanded_help(p, action), p, action):
            problems.append(f'UNOBSERVED {name} {flag}: no stated default '
                            'over a None default')
    shared = shared_reference()
    for (name, flag) in LOCAL_MEANINGS:
        action = program(name).parser._option_string_actions.get(flag)
        if action is None:
            problems.append(f'LOCAL_MEANINGS {name} {flag}: no such flag')
    for name, flags in FOREIGN.items():
        parser = program(name).parser
        text = ' '.join(t for _, t, _ in texts_of(parser))
        for flag in flags:
            if flag in parser._option_string_actions or flag not in text:
                problems.append(f'FOREIGN {name} {flag}: not needed')
    assert shared and not problems, '\n'.join(problems)


def test_keep_crs_help_names_the_formats_it_changes(tmp_path):
    """--keep-crs names the formats whose layer it changes: each format
    written by a run with and without it, only those come back in
    another CRS."""
    pyogrio = pytest.importorskip('pyogrio')
    from mmretina.geo.writers import VECTOR_FORMATS
    changed = set()
    for fmt in VECTOR_FORMATS:
        crs = []
        for keep in (False, True):
            out = predict_run(str(tmp_path / f'{fmt}_{keep}'), fmt=fmt,
                              keep_crs=keep)
            crs.append(pyogrio.read_info(layers_written(out)[fmt])['crs'])
        if crs[0] != crs[1]:
            changed.add(fmt)
    parser = program('mmretina predict').parser
    text = expanded_help(parser, parser._option_string_actions['--keep-crs'])
    assert formats_named(text) == changed, (text, changed)


def test_format_help_states_what_a_run_writes(tmp_path):
    """--format's help: the default format for a georeferenced raster
    (checked with the other defaults), none for a plain image."""
    plain = layers_written(predict_run(str(tmp_path), georeferenced=False))
    parser = program('mmretina predict').parser
    text = expanded_help(parser, parser._option_string_actions['--format'])
    assert (plain == {}) == ('none for plain images' in text), (plain, text)


def amp_help_problems(text: str, cpu_dtype: str, refused: bool) -> List[str]:
    """What ``--amp``'s help gets wrong, given the dtype a CPU autocasts to
    and whether this machine (no accelerator) refuses ``--amp``."""
    problems = []
    names = {'bfloat16': ('bfloat16', 'bf16'), 'float16': ('fp16',
                                                            'float16')}
    if not any(n in text for n in names[cpu_dtype]):
        problems.append(f'--amp: the help does not say a CPU trains in '
                        f'{cpu_dtype}')
    if re.search(r'\b(needs|requires|only on|only with)\b[^;.]*\b(GPU|CUDA)',
                 text):
        problems.append('--amp: the help says a GPU is needed, but a CPU '
                        f'trains in {cpu_dtype}')
    says_refused = re.search(r'\b(refused|fails|error)\b', text)
    if refused and not says_refused:
        problems.append('--amp is refused on a CPU without native bf16, and '
                        'the help does not say so')
    return problems


def test_amp_help_matches_the_cpu_path(capsys):
    import torch

    from mmretina.cli import train
    from mmretina.engine.optimizers import BF16OptimWrapper, bf16_supported
    model = torch.nn.Linear(2, 2)
    wrapper = BF16OptimWrapper(
        enabled=True, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        cpu_dtype = str(torch.get_autocast_dtype('cpu')).split('.')[1]
    refused = False
    if not train._amp_device_available():
        try:
            train.parse_args(['cfg.py', '--amp'])
        except SystemExit as e:
            refused = e.code == 2 and '--amp' in capsys.readouterr().err
        assert refused == (not bf16_supported('cpu'))
    parser = program('mmretina train').parser
    text = expanded_help(parser, parser._option_string_actions['--amp'])
    assert not amp_help_problems(text, cpu_dtype, refused), text


def test_fuse_conv_bn_help_names_where_it_applies(capsys):
    """The help names what --fuse-conv-bn is refused without: the pytorch
    backend, a CPU device."""
    from mmretina.cli import infer

    def refused(*argv) -> bool:
        try:
            infer.parse_args(['a.tif', *argv, '--out-dir', 'o',
                              '--fuse-conv-bn'])
        except SystemExit as e:
            return e.code == 2 and '--fuse-conv-bn' in capsys.readouterr().err
        return False

    other_backend = refused('m.onnx', '--backend', 'onnxruntime')
    other_device = refused('c.py', 'x.pth', '--device', 'cuda:0')
    assert not refused('c.py', 'x.pth', '--device', 'cpu')
    parser = program('mmretina predict').parser
    text = expanded_help(parser,
                         parser._option_string_actions['--fuse-conv-bn'])
    assert other_backend == ('pytorch' in text), text
    assert other_device == ('CPU' in text), text


@pytest.mark.parametrize('name',
                         ['mmretina predict', 'mmretina convert raster'])
def test_bands_help_states_the_one_band_default(name):
    """Checked with the other defaults: 1,2,3; here: a one-band raster's."""
    parser = program(name).parser
    text = expanded_help(parser, parser._option_string_actions['--bands'])
    one = ','.join(map(str, observed_default_bands(1)))
    assert f'{one} for a one-band raster' in text, text


def test_scale_help_states_the_default_percentiles():
    from mmretina.cli.options import add_raster_args
    from mmretina.geo.raster import DEFAULT_PERCENTILES, parse_scale
    parser = argparse.ArgumentParser()
    add_raster_args(parser)
    text = expanded_help(parser, parser._option_string_actions['--scale'])
    lo, hi = DEFAULT_PERCENTILES
    stated = f'p{lo:g},p{hi:g}'
    assert stated in text, text
    assert parse_scale([stated]) == ('percentile', lo, hi)


# ------------------------------------------- the checker finds each mistake
def _bad_parser() -> argparse.ArgumentParser:
    from mmretina.cli.options import add_window_args
    from mmretina.geo.writers import VECTOR_FORMATS
    p = argparse.ArgumentParser(
        prog='bad',
        description='Detect objects and write PNG / GeoJSON at',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Use --no-such-flag to go faster (--count many is wrong);\n'
        '--resume is train\'s, --nope is nobody\'s.\n'
        '    python tools/train.py CONFIG --epochz 3\n')
    p.add_argument('--count', type=int, default=3,
                   help='how many (default 4)')
    p.add_argument('--mode', choices=['fast', 'slow', 'exact'],
                   default='fast', help='fast (default) or slow')
    p.add_argument('--order', choices=['asc', 'desc'], default='desc',
                   help='asc (default) or desc')
    p.add_argument('--rule', choices=['nms', 'wbf'], default='nms',
                   help='merge: nms, wbf or soft-nms')
    p.add_argument('--side', type=int, default=8,
                   help='window side: auto (the model\'s), 0 (whole) or N')
    p.add_argument('--ratio', type=float, default=0.5, help='e.g. half')
    p.add_argument('--thing', help='what to use (default 7)')
    p.add_argument('--channels', help='bands (default 1,2,4)')
    p.add_argument('--format', choices=sorted(VECTOR_FORMATS)[:-1],
                   help='GIS layer (default gpkg for rasters)')
    p.add_argument('--out-dir', help='PNGs and GeoJSON layers')
    add_window_args(p)
    p.add_argument('--device', default='cpu', help='PyTorch device')
    return p


BAD_PROBLEMS = [
    "bad: --count: the help says default 4, the parser's is 3",
    "bad: --mode: the help lists fast, slow but not exact",
    "bad: --order: the help says default asc, the parser's is 'desc'",
    'bad: epilog names --nope of mmretina train, which has no --nope',
    "bad: --rule: the help lists 'soft-nms', which is not a choice",
    "bad: --side: the help offers 'auto': invalid int value: 'auto'",
    "bad: --ratio: the help offers 'half': invalid float value: 'half'",
    "bad: --thing: the help says default 7, the parser's is None",
    "bad: --channels: the help says default 1,2,4, the code uses (1, 2, 3)",
    'bad: --format offers csv, fgb, geojson, gpkg; the writers write csv, '
    'fgb, geojson, gpkg, shp',
    'bad: description names geojson as the GIS output but not gpkg',
    'bad: --out-dir names geojson as the GIS output but not gpkg',
    'bad: description stops mid-sentence',
    'bad: epilog names --no-such-flag, which this parser does not have',
    "bad: epilog gives --count 'many': invalid int value: 'many'",
    'bad: epilog: tools/train.py: unknown option --epochz',
    "bad: --device is not mmretina/cli/options.py's (default 'cpu'",
]


BAD_RESOLVED = {'--channels': lambda: (1, 2, 3), '--format': lambda: 'gpkg'}
BAD_FOREIGN = {'--resume': 'mmretina train', '--nope': 'mmretina train'}


def test_checker_reports_each_kind_of_mistake():
    problems = check_parser('bad', _bad_parser(), resolved=BAD_RESOLVED,
                            unobserved={}, local={}, foreign=BAD_FOREIGN,
                            default_format=lambda: 'gpkg')
    for expected in BAD_PROBLEMS:
        assert any(p.startswith(expected) for p in problems), (
            expected, problems)
    assert len(problems) == len(BAD_PROBLEMS), '\n'.join(problems)
    # a shared flag listed as local although it is options.py's
    problems = check_parser(
        'bad', _bad_parser(), resolved=BAD_RESOLVED, unobserved={},
        foreign=BAD_FOREIGN,
        local={('bad', '--tile'): 'x', ('bad', '--device'): 'y'},
        default_format=lambda: 'gpkg')
    assert 'bad: --tile is options.py\'s: drop it from LOCAL_MEANINGS' in \
        problems
    assert not any(p.startswith('bad: --device') for p in problems)


def test_checker_reports_the_help_texts_issue_30_found():
    """The two drifts of issue 30: --amp's "fp16 needs a GPU" while CPUs
    train in bf16, and infer's help listing GeoJSON outputs while
    GeoPackage is the default."""
    assert amp_help_problems('enable automatic-mixed-precision training '
                             '(fp16; needs a GPU)', 'bfloat16', True) == [
        '--amp: the help does not say a CPU trains in bfloat16',
        '--amp: the help says a GPU is needed, but a CPU trains in bfloat16',
        '--amp is refused on a CPU without native bf16, and the help does '
        'not say so']
    p = argparse.ArgumentParser(
        prog='p', description='write PNG / COCO JSON / CSV / GeoJSON')
    p.add_argument('--format', choices=['csv', 'fgb', 'geojson', 'gpkg',
                                        'shp'])
    assert check_parser('p', p, default_format=lambda: 'gpkg') == [
        'p: description names geojson as the GIS output but not gpkg, the '
        'format written by default']
