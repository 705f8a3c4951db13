"""Benchmark tables as JSON, and the Markdown the docs show of them.

A benchmark run with ``--json OUT`` writes one record: the table it printed
(columns and rows of text, exactly as printed), the command, the date (UTC),
the CPU and the library versions. ``render`` turns a record into the
Markdown of the speed guide: a line naming the command, the date and the
CPU, then the table. ``update`` rewrites every block of a page that stands
between

    <!-- benchmark: RECORD.json -->
    <!-- /benchmark -->

(the path relative to the page) with the rendering of that record, and
``--check`` only says whether the page is up to date (``tests/docs`` runs
it), so a table in the docs cannot drift from its record.

    python benchmarks/bench_head.py --json head.json
    python benchmarks/report.py render head.json
    python benchmarks/report.py update docs/user_guides/speed.md [--check]

This module imports nothing beyond the standard library.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import re
import sys
from typing import Dict, List, Optional, Sequence

BLOCK = re.compile(r'(<!-- benchmark: (?P<path>\S+) -->\n)(?P<body>.*?)'
                   r'(<!-- /benchmark -->)', re.S)
FIELDS = ('benchmark', 'command', 'date', 'cpu', 'columns', 'rows')


def table_record(benchmark: str, cpu: str, columns: Sequence[str],
                 rows: Sequence[Sequence[str]], notes: Sequence[str] = (),
                 argv: Optional[Sequence[str]] = None, **context) -> Dict:
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
        **context: more facts of the run (``threads``, ``repeats``, ...),
            stored as given and shown after the CPU.

    Returns:
        dict: ``benchmark``, ``command``, ``date`` (UTC, ISO 8601 to the
        minute), ``cpu``, ``python``, ``columns``, ``rows``, ``notes`` and
        ``context``.
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
    now = datetime.datetime.now(datetime.timezone.utc)
    return dict(
        benchmark=benchmark,
        command=' '.join(['python', benchmark] + list(argv)),
        date=now.strftime('%Y-%m-%dT%H:%MZ'),
        cpu=cpu,
        python=platform.python_version(),
        columns=list(columns),
        rows=[[str(c) for c in row] for row in rows],
        notes=list(notes),
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


def read_record(path: str) -> Dict:
    """A record written by :func:`write_record`; the error names the file
    and the missing fields."""
    with open(path) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{path}: not a benchmark record ({e})') from e
    missing = [k for k in FIELDS if k not in record]
    if missing:
        raise ValueError(f'{path}: not a benchmark record, it lacks '
                         f'{missing}; write it with a benchmark\'s --json')
    return record


def render(record: Dict) -> str:
    """Markdown of a record: what was run, when and on which CPU, then the
    table and its notes."""
    context = '; '.join(f'{k}: {v}'
                        for k, v in record.get('context', {}).items())
    lines = [
        f'`{record["command"]}`, {record["date"][:10]}, on '
        f'{record["cpu"]}.' + (f' ({context})' if context else ''), '',
        '| ' + ' | '.join(record['columns']) + ' |',
        '|' + '---|' * len(record['columns'])
    ]
    lines += ['| ' + ' | '.join(row) + ' |' for row in record['rows']]
    for note in record.get('notes', []):
        lines += ['', note]
    return '\n'.join(lines) + '\n'


def update_page(page: str, check: bool = False) -> List[str]:
    """Re-render the benchmark blocks of the Markdown file ``page``.

    Returns:
        list[str]: the records whose block changed (with ``check``, the
        page is not written).
    """
    with open(page) as f:
        text = f.read()
    changed = []

    def block(m):
        path = osp.join(osp.dirname(page), m.group('path'))
        body = render(read_record(path))
        if body != m.group('body'):
            changed.append(m.group('path'))
        return m.group(1) + body + m.group(4)

    new = BLOCK.sub(block, text)
    if changed and not check:
        with open(page, 'w') as f:
            f.write(new)
    return changed


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('render', help='print the Markdown of records')
    r.add_argument('records', nargs='+')
    u = sub.add_parser('update', help='re-render the blocks of pages')
    u.add_argument('pages', nargs='+')
    u.add_argument('--check', action='store_true',
                   help='only report pages that are out of date (exit 1)')
    args = p.parse_args(argv)
    if args.cmd == 'render':
        print('\n'.join(render(read_record(f)) for f in args.records))
        return 0
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
