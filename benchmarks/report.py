"""Benchmark tables as JSON, and the Markdown the docs show of them.

A benchmark run with ``--json OUT`` writes one record: the table it printed
(columns and rows of text, exactly as printed), the command, the date (UTC),
the commit, the CPU and the library versions, and any single figures it
names (``figures``). The main job, ``tools/run_demo.sh``, writes one too.
Every record says where its figures come from (``provenance``):
``"measured"``, written by the tool that measured them, or
``"transcribed"``, copied by hand from an earlier run's printed output (a
closing note, a committed table, a log) with ``source`` saying from where;
such a record's command, date and commit are those of the run as far as
they are known (often ``unknown``). ``render`` turns a record into the
Markdown of the guides: a line that says first how the figures came to be
("Measured by ..." or "Transcribed (not written by the tool) from ..."),
naming the command, the date, the commit and the CPU, then the table.
``update`` rewrites every block of a page that stands between

    <!-- benchmark: RECORD.json [RECORD.json ...] -->
    <!-- /benchmark -->

(paths relative to the page; several records with the same columns make
one table, a row each, with a line per row naming its run) with the
rendering of those records, and every figure quoted in a sentence as

    <!-- figure: RECORD.json#KEY -->VALUE<!-- /figure -->

with the record's value: KEY is a name of the record's ``figures`` or
``ROW/COLUMN``, a cell (rows counted from 1, the column by its header).
``--check`` only says whether the page is up to date (``tests/docs`` runs
it), so a figure in the docs cannot drift from its record. ``figures``
lists the machine-made figures a page states outside those forms (times,
ratios, sizes, accuracies; see :func:`loose_figures`).

    python benchmarks/bench_head.py --json head.json
    python benchmarks/report.py render head.json
    python benchmarks/report.py update docs/user_guides/speed.md [--check]
    python benchmarks/report.py figures README.md

This module imports nothing beyond the standard library.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import re
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

BLOCK = re.compile(r'(<!-- benchmark: (?P<paths>[^>\n]*?) -->\n)(?P<body>.*?)'
                   r'(<!-- /benchmark -->)', re.S)
FIGURE = re.compile(r'(<!-- figure: (?P<path>[^#\s]+)#(?P<key>(?:(?!-->)[^\n])*?) -->)'
                    r'(?P<value>[^<\n]*)(<!-- /figure -->)')
FIELDS = ('benchmark', 'provenance', 'command', 'date', 'commit', 'cpu',
          'columns', 'rows')
PROVENANCES = ('measured', 'transcribed')
HERE = osp.dirname(osp.abspath(__file__))


def git_commit(path: str = HERE) -> str:
    """The commit of the clone that holds ``path`` (by default this
    repository): ``git rev-parse --short=10 HEAD``, with ``-dirty`` when
    tracked files differ from it, or ``'unknown'`` outside a clone (an
    installed copy, a tarball) or without git."""

    def git(*args):
        return subprocess.run(('git', ) + args, cwd=path, text=True,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=30)

    try:
        head = git('rev-parse', '--short=10', 'HEAD')
        if head.returncode or not head.stdout.strip():
            return 'unknown'
        changed = git('status', '--porcelain', '--untracked-files=no')
    except (OSError, subprocess.SubprocessError):
        return 'unknown'
    dirty = '-dirty' if changed.stdout.strip() else ''
    return head.stdout.strip() + dirty


def table_record(benchmark: str, cpu: str, columns: Sequence[str],
                 rows: Sequence[Sequence[str]], notes: Sequence[str] = (),
                 argv: Optional[Sequence[str]] = None,
                 figures: Optional[Dict[str, str]] = None,
                 commit: Optional[str] = None, provenance: str = 'measured',
                 source: Optional[str] = None, **context) -> Dict:
    """One benchmark table as a JSON-ready dict.

    Args:
        benchmark (str): the script, e.g. ``'benchmarks/bench_head.py'``.
        cpu (str): the CPU as the benchmark describes it (``lscpu``'s model
            name and what it runs natively).
        columns (list[str]): the table's header cells.
        rows (list[list[str]]): the table's cells as printed, one list of
            ``len(columns)`` strings per row.
        notes (list[str]): sentences printed below the table.
        argv (list[str], optional): the script's arguments (default:
            ``sys.argv[1:]``, minus ``--json OUT``).
        figures (dict[str, str], optional): single figures of the run by
            name, as the pages quote them (``{'whole job s': '778'}``).
        commit (str, optional): the code measured (default:
            :func:`git_commit` of this repository).
        provenance (str): ``'measured'`` (the default: the calling tool
            measured the figures) or ``'transcribed'`` (they were copied
            from an earlier run's output; give ``source``).
        source (str, optional): for a transcribed record, where the
            figures were copied from, as the sentence "Transcribed ... from
            SOURCE" ends (``'the closing note of stop 25 (issue 22)'``).
        **context: more facts of the run (``threads``, ``repeats``, ...),
            stored as given and shown after the CPU.

    Returns:
        dict: ``benchmark``, ``provenance`` (and ``source`` when
        transcribed), ``command``, ``date`` (UTC, ISO 8601 to the minute),
        ``commit``, ``cpu``, ``python``, ``columns``, ``rows``, ``notes``,
        ``figures`` and ``context``.
    """
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f'{benchmark}: row {i} has {len(row)} cells '
                             f'for {len(columns)} columns: {row}')
    if argv is None:
        argv = list(sys.argv[1:])
        if '--json' in argv:
            i = argv.index('--json')
            del argv[i:i + 2]
    origin = dict(provenance=provenance)
    if source is not None:
        origin['source'] = source
    check_provenance(origin, benchmark)
    now = datetime.datetime.now(datetime.timezone.utc)
    return dict(
        benchmark=benchmark,
        **origin,
        command=' '.join(['python', benchmark] + list(argv)),
        date=now.strftime('%Y-%m-%dT%H:%MZ'),
        commit=git_commit() if commit is None else commit,
        cpu=cpu,
        python=platform.python_version(),
        columns=list(columns),
        rows=[[str(c) for c in row] for row in rows],
        notes=list(notes),
        figures={k: str(v) for k, v in (figures or {}).items()},
        context=dict(context, **{'load average': _load_average()}))


def _load_average() -> str:
    """The 1-minute load average when the table was written, beside the
    core count: on a shared machine it says how far to trust the times."""
    try:
        return f'{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores'
    except OSError:  # not on every platform
        return 'unknown'


def write_record(path: str, record: Dict) -> None:
    """Write ``record`` (see :func:`table_record`) as JSON to ``path``."""
    with open(path, 'w') as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
        f.write('\n')


def check_provenance(record: Dict, name: str = 'record') -> None:
    """Raise ``ValueError`` naming ``name`` unless ``record`` says where its
    figures come from: ``provenance`` ``'measured'`` (without ``source``)
    or ``'transcribed'`` with a ``source``."""
    provenance, source = record.get('provenance'), record.get('source')
    if provenance not in PROVENANCES:
        raise ValueError(
            f'{name}: provenance is {provenance!r}; it must be "measured" '
            '(the figures written by the tool that measured them, as '
            'table_record does) or "transcribed" (copied from an earlier '
            'run\'s output, with "source" saying from where)')
    if provenance == 'transcribed' and not (isinstance(source, str)
                                            and source.strip()):
        raise ValueError(f'{name}: a transcribed record needs "source": '
                         'where its figures were copied from (a closing '
                         'note, a commit, a log)')
    if provenance == 'measured' and source is not None:
        raise ValueError(f'{name}: a measured record has no "source"; if '
                         'its figures were copied from elsewhere, its '
                         'provenance is "transcribed"')


def read_record(path: str) -> Dict:
    """A record written by :func:`write_record`; the error names the file
    and the missing fields, or what is wrong with its provenance."""
    with open(path) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{path}: not a benchmark record ({e})') from e
    missing = [k for k in FIELDS if k not in record]
    if missing:
        raise ValueError(f'{path}: not a benchmark record, it lacks '
                         f'{missing}; write it with a benchmark\'s --json')
    check_provenance(record, path)
    return record


def _origin(record: Dict) -> str:
    """How the figures came to be (measured by the tool, or transcribed and
    from where), then what was run, when, on which commit and CPU, and the
    context."""
    check_provenance(record)
    context = '; '.join(f'{k}: {v}'
                        for k, v in record.get('context', {}).items())
    run = (f'`{record["command"]}`, {record["date"][:10]}, commit '
           f'{record["commit"]}, on {record["cpu"]}.' +
           (f' ({context})' if context else ''))
    if record['provenance'] == 'measured':
        return f'Measured by {run}'
    source = record['source'].strip().rstrip('.')
    return (f'Transcribed (not written by the tool) from {source}. '
            f'The run: {run}')


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> List:
    return (['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
            + ['| ' + ' | '.join(row) + ' |' for row in rows])


def render(record: Dict) -> str:
    """Markdown of a record: whether the tool wrote its figures or they were
    transcribed (and from where), what was run, when, on which commit and
    CPU, then the table and its notes."""
    lines = [_origin(record), ''] + _table(record['columns'], record['rows'])
    for note in record.get('notes', []):
        lines += ['', note]
    return '\n'.join(lines) + '\n'


def render_rows(records: Sequence[Dict], names: Sequence[str] = ()) -> str:
    """Markdown of several records with the same columns (runs of one tool
    on several machines): one table, their rows in order, then a line per
    record naming its rows, whether measured or transcribed, what was run,
    when, on which commit and CPU, and its notes."""
    names = list(names) or [f'record {i + 1}' for i in range(len(records))]
    columns = records[0]['columns']
    for name, record in zip(names, records):
        if record['columns'] != columns:
            raise ValueError(f'{name}: columns {record["columns"]} differ '
                             f'from {names[0]}\'s {columns}; one table '
                             'needs the same columns')
    rows = [row for record in records for row in record['rows']]
    lines = _table(columns, rows) + ['']
    first = 1
    for record in records:
        n = len(record['rows'])
        which = f'row {first}' if n == 1 else f'rows {first}-{first + n - 1}'
        notes = ''.join(' ' + note for note in record.get('notes', []))
        lines.append(f'- {which}: {_origin(record)}{notes}')
        first += n
    return '\n'.join(lines) + '\n'


def figure_value(record: Dict, key: str, name: str = 'record') -> str:
    """The figure ``key`` of ``record``: a name of its ``figures``, or
    ``ROW/COLUMN``, the cell of row ROW (from 1) in the column headed
    COLUMN (or the COLUMN-th, from 1, where headers repeat). The error
    names the record and what it holds."""
    cell = re.fullmatch(r'(\d+)/(.+)', key)
    if cell:
        row, column = int(cell.group(1)), cell.group(2)
        columns = record['columns']
        if column.isdigit() and 1 <= int(column) <= len(columns):
            col = int(column) - 1
        elif columns.count(column) == 1:
            col = columns.index(column)
        else:
            col = None
        if col is None or not 1 <= row <= len(record['rows']):
            raise KeyError(f'{name}#{key}: no such cell (or a header that '
                           f'repeats: give its number); rows 1-'
                           f'{len(record["rows"])}, columns {columns}')
        return record['rows'][row - 1][col]
    figures = record.get('figures', {})
    if key not in figures:
        raise KeyError(f'{name}#{key}: no figure of that name; it has '
                       f'{sorted(figures)} (or ROW/COLUMN for a cell)')
    return str(figures[key])


def update_text(text: str, folder: str) -> Tuple[str, List[str]]:
    """``text`` with its benchmark blocks and inline figures re-rendered
    from their records (paths relative to ``folder``).

    Returns:
        tuple[str, list[str]]: the new text and the blocks and figures that
        changed (``RECORD.json`` or ``RECORD.json#KEY``).
    """
    changed = []
    records = {}

    def load(path):
        if path not in records:
            records[path] = read_record(osp.join(folder, path))
        return records[path]

    def block(m):
        paths = m.group('paths').split()
        loaded = [load(p) for p in paths]
        body = (render(loaded[0]) if len(loaded) == 1 else
                render_rows(loaded, paths))
        if body != m.group('body'):
            changed.append(' '.join(paths))
        return m.group(1) + body + m.group(4)

    def figure(m):
        path, key = m.group('path'), m.group('key')
        value = figure_value(load(path), key, path)
        if value != m.group('value'):
            changed.append(f'{path}#{key} ({m.group("value")!r} is '
                           f'{value!r} in the record)')
        return m.group(1) + value + m.group(5)

    return FIGURE.sub(figure, BLOCK.sub(block, text)), changed


def update_page(page: str, check: bool = False) -> List[str]:
    """Re-render the benchmark blocks and inline figures of the Markdown
    file ``page``.

    Returns:
        list[str]: the records and figures that changed (with ``check``,
        the page is not written).
    """
    with open(page, encoding='utf-8') as f:
        text = f.read()
    new, changed = update_text(text, osp.dirname(page))
    if changed and not check:
        with open(page, 'w', encoding='utf-8') as f:
            f.write(new)
    return changed


# What a machine made: a number with a unit of time, size, rate or ratio
# ("778 s", "1.2 GB", "3.13x", "102 windows / s", "62%"), an accuracy
# (0.xyz, or a number after mAP / AP / precision / recall), a number in
# e-notation (a measured difference, "max difference 3e-6", "4.9e-4 px")
# and, in a table, the numbers of a column headed by a time, size, speed or
# accuracy.
_NUMBER = r'\d[\d,]*(?:\.\d+)?'
_UNIT = (r'(?:ms|s|min|minutes?|seconds?|hours?|h|[KMG]i?B(?:/s)?|'
         r'(?:img|images|windows|tiles|it|ha) ?/ ?(?:s|min)|%|x(?! ?\d)|×(?! ?\d))')
_MEASURED = re.compile(
    rf'(?<![\w.]){_NUMBER}(?:\s*(?:-|–|to)\s*{_NUMBER})?\s?{_UNIT}(?![\w/])'
    r'|(?<![\w.])0\.\d{3,}(?!\d)'
    r'|\b(?:mAP(?:50)?|AP(?:50)?|precision|recall)\b(?: of|:| =)? '
    r'\d?\.\d+(?!\d)'
    r'|(?<![\w.])\d+(?:\.\d+)?[eE][-+]?\d+(?!\w)')
_MEASURED_COLUMN = re.compile(
    r'\b(?:s|ms|time|MiB|MB|GB|RSS|memory|mAP\w*|AP\w*|precision|recall|'
    r'speed-up|images/s|windows ?/ ?s|ratio|faster)\b|×|/s\b', re.I)
# Numbers the pages state that no machine measured: settings, thresholds,
# sizes of inputs, targets, tolerances and arithmetic. A figure is let pass
# when one of these matches a stretch of its line that covers it.
NOT_MEASURED = (
    # thresholds and targets ("above 10% it logs", "at least 1.5x"); not a
    # share of something ("exceeds 95% of the crowns", "over 80% of the
    # boxes": measured) unless a condition states it ("when more than 10%
    # of the boxes ...")
    r'\b(?:above|below|more than|over|at least|under) '
    r'\d[\d.]*\s?(?:%|x|×)(?! of\b)',
    r'\b(?:when|if|unless)\b[^.;]*?\b(?:above|below|more than|over|at '
    r'least|under|exceeds?) \d[\d.]*\s?%',
    # a tolerance or a setting in e-notation: a bound written as a bare
    # power of ten after "to", "within", "relative", "plus", "+" or a
    # setting's name ("the tests assert agreement within 1e-3", "to 1e-6
    # m", "lr 1e-4", "eps (1e-5"); a measured difference is written with its
    # digits ("4.9e-4", "3e-6") and is caught
    r'(?:(?i:\b(?:to|within|relative|plus|lr|wd|eps|rtol|atol|tolerance))'
    r'\W{1,3}|\+ )1e-\d+(?!\w)',
    r'scaled linearly is [\d.]+e-\d+',             # 0.01 x 2 / 16
    r'hardest \d+\s?%',                             # the paper's statistic
    r'\b\d+-?minute (?:target|budget)',             # the job's budget
    r'fills only \d+(?:\.\d+)? ?% of its enclosing',  # 3:1 at 45 degrees
    r'\b\d+x larger',                               # 10 cm / 2.5 cm, squared
    r'\bwithin \d+(?:\.\d+)? ?%',                     # the GSD rule
    r"GDAL's default of \d+ ?% of the RAM",          # GDAL's setting
    r'\bcapped at \d+ ?MB',                          # our setting
    r'\d+ MB for a [\d,]+ px wide',                  # cache_bytes' formula
    r'tiling \(\d+ MB here\)',                       # the same
    r'would need [\d.]+ GB for the decoded raster',  # width x height x 3
    r'ResNet-50,\s+\(~\d+ MB\)',                    # a published file's size
    r'budget rule \(\d+ s\b',                        # the demo recipe's budget
)


def _blank(m):
    return '\n' * m.group().count('\n')


def _covered(span: Tuple[int, int], spans: Sequence[Tuple[int, int]]):
    return any(a <= span[0] and span[1] <= b for a, b in spans)


def loose_figures(text: str,
                  allowed: Sequence[str] = NOT_MEASURED) -> List[Tuple]:
    """Machine-made figures ``text`` states outside its benchmark blocks
    and inline figures: what a test forbids, since such a figure has no
    record to be checked against.

    Code (fenced or in backticks), link targets and HTML comments are not
    read. Table rows are read cell by cell: in a column whose header names
    a time, size, speed or accuracy every number counts (not in one headed
    "paper ...": the paper's published figures).

    Args:
        text (str): a Markdown page.
        allowed (list[str]): regexes of stretches whose numbers are not
            measurements (default :data:`NOT_MEASURED`).

    Returns:
        list[tuple[int, str, str]]: (line number, figure, line) each.
    """
    text = BLOCK.sub(_blank, text)
    text = FIGURE.sub('', text)
    text = re.sub(r'^```.*?^```', _blank, text, flags=re.S | re.M)
    text = re.sub(r'<!--.*?-->', _blank, text, flags=re.S)
    found, header = [], None
    for n, line in enumerate(text.split('\n'), 1):
        line = re.sub(r'`[^`\n]*`', '', line)
        line = re.sub(r'\]\([^)\s]*\)', ']', line)
        spans = [m.span() for rx in allowed for m in re.finditer(rx, line)]
        hits = [m for m in _MEASURED.finditer(line)
                if not _covered(m.span(), spans)]
        found += [(n, m.group(0).strip(), line.strip()) for m in hits]
        if not line.lstrip().startswith('|'):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if header is None:
            header = cells
        elif not all(re.fullmatch(r':?-+:?', c) for c in cells):
            for title, cell in zip(header, cells):
                number = re.search(r'\d', cell)
                if (number and _MEASURED_COLUMN.search(title)
                        and not title.lower().startswith('paper')
                        and not any(cell in h[1] or h[1] in cell
                                    for h in found if h[0] == n)):
                    found.append((n, cell, line.strip()))
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('render', help='print the Markdown of records')
    r.add_argument('records', nargs='+')
    u = sub.add_parser('update', help='re-render the blocks and figures '
                       'of pages')
    u.add_argument('pages', nargs='+')
    u.add_argument('--check', action='store_true',
                   help='only report pages that are out of date (exit 1)')
    f = sub.add_parser('figures', help='list the machine-made figures of '
                       'pages that no record backs (exit 1 if any)')
    f.add_argument('pages', nargs='+')
    args = p.parse_args(argv)
    if args.cmd == 'render':
        print('\n'.join(render(read_record(f)) for f in args.records))
        return 0
    if args.cmd == 'figures':
        loose = 0
        for page in args.pages:
            with open(page, encoding='utf-8') as fh:
                for n, figure, line in loose_figures(fh.read()):
                    loose += 1
                    print(f'{page}:{n}: {figure}    ({line[:80]})')
        return 1 if loose else 0
    stale = 0
    for page in args.pages:
        changed = update_page(page, check=args.check)
        if changed:
            stale += 1
            verb = 'out of date' if args.check else 'updated'
            print(f'{page}: {verb}: {", ".join(changed)}')
    return 1 if args.check and stale else 0


if __name__ == '__main__':
    sys.exit(main())
