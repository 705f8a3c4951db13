"""Every figure a machine made (a time, a ratio, a size, an accuracy, a
measured difference) that README.md, docs/index.md and the user guides
state comes from a record, rendered into the page by
``benchmarks/report.py``: a table between ``<!-- benchmark: RECORD.json
-->`` and ``<!-- /benchmark -->``, or a figure in a sentence as
``<!-- figure: RECORD.json#KEY -->VALUE<!-- /figure -->``.

A record says where its figures come from (``provenance``): ``measured``,
written by the tool that measured them, or ``transcribed``, copied by hand
from an earlier run's output, with its ``source``; most records of the
docs are transcribed, and the line under or beside each table says which
before anything else ("Measured by ..." / "Transcribed (not written by the
tool) from ..."). A record without a valid provenance is refused.

The pages are checked against their records (a hand edit, or a record
changed without ``update``, fails), and for figures stated outside those
forms (``report.loose_figures``): a page may state none.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'benchmarks'))
import report  # noqa: E402

GUIDES = osp.join('docs', 'user_guides')
PAGES = ['README.md', osp.join('docs', 'index.md')] + sorted(
    osp.join(GUIDES, f) for f in os.listdir(osp.join(REPO, GUIDES))
    if f.endswith('.md'))


def read(path):
    with open(osp.join(REPO, path), encoding='utf-8') as f:
        return f.read()


@pytest.mark.parametrize('page', PAGES)
def test_page_figures_are_their_records(page):
    """The page's tables and quoted figures equal their records'."""
    _, changed = report.update_text(read(page), osp.dirname(
        osp.join(REPO, page)))
    assert not changed, (f'{page} differs from its records: {changed}; '
                         f'run: python benchmarks/report.py update {page}')


@pytest.mark.parametrize('page', PAGES)
def test_no_machine_made_figure_without_a_record(page):
    loose = report.loose_figures(read(page))
    listing = '\n'.join(f'  {page}:{n}: {fig}' for n, fig, _ in loose)
    assert not loose, (
        f'{page} states {len(loose)} machine-made figures without a record:'
        f'\n{listing}\nput each in a record and render it '
        '(benchmarks/report.py), or, for a number no machine measured, '
        'widen report.NOT_MEASURED')


@pytest.mark.parametrize('page', PAGES)
def test_each_table_says_first_whether_measured_or_transcribed(page):
    text = read(page)
    for m in report.BLOCK.finditer(text):
        paths = m.group('paths').split()
        records = [report.read_record(osp.join(REPO, osp.dirname(page), p))
                   for p in paths]  # raises without a valid provenance
        lines = m.group('body').split('\n')
        if len(records) == 1:
            origins = lines[:1]
        else:
            origins = [ln.split(': ', 1)[1] for ln in lines
                       if ln.startswith('- row')]
        assert len(origins) == len(records), (page, paths)
        for path, rec, origin in zip(paths, records, origins):
            want = ('Measured by `' if rec['provenance'] == 'measured' else
                    'Transcribed (not written by the tool) from ')
            assert origin.startswith(want), (page, path, origin[:80])


def test_readme_carries_the_main_job_records_with_the_epyc_row():
    text = read('README.md')
    block = next(m for m in report.BLOCK.finditer(text)
                 if 'main_job_' in m.group('paths'))
    records = [report.read_record(osp.join(REPO, p))
               for p in block.group('paths').split()]
    assert all(r['benchmark'] == 'tools/run_demo.sh' for r in records)
    assert any(r['cpu'].startswith('AMD EPYC') for r in records)
    assert any('Xeon' in r['cpu'] for r in records)
    assert 'AMD EPYC' in block.group('body')


# The detector and the check on pages made for the purpose


def record(tmp_path, name='run.json', **kw):
    rec = report.table_record(
        'benchmarks/bench_x.py', kw.pop('cpu', 'AMD EPYC, 2 cores'),
        kw.pop('columns', ['objects', 'time', 'speed-up']),
        kw.pop('rows', [['8', '2.50 s', '4.45x'], ['100', '3.10 s',
                                                     '8.04x']]),
        argv=['--quick'], commit='abc1234567', **kw)
    report.write_record(str(tmp_path / name), rec)
    return rec


def loose(text):
    return [fig for _, fig, _ in report.loose_figures(text)]


@pytest.mark.parametrize('sentence, figure', [
    ('The whole job took 778 s on the EPYC.', '778 s'),
    ('Training: 11 min.', '11 min'),
    ('The loss step is 4.45x faster.', '4.45x'),
    ('The loss step is 146× faster.', '146×'),
    ('Prediction runs 1.8-3.8x faster.', '1.8-3.8x'),
    ('Peak memory 1.2 GB here.', '1.2 GB'),
    ('It reads 102 windows / s.', '102 windows / s'),
    ('The test mAP50 is 0.176 here.', '0.176'),
    ('mAP50 .25 on the val images.', 'mAP50 .25'),
    ('The backbone takes 18 % of the step.', '18 %'),
    ('ONNX and PyTorch boxes: max difference 3e-6.', '3e-6'),
    ('Boxes within 4.9e-4 px of PyTorch\'s.', '4.9e-4'),
    ('Scores differ by at most 1.0e-6 here.', '1.0e-6'),
    ('The 100 px overlap exceeds 95% of DeepForest crowns.', '95%'),
    ('The filter keeps more than 80% of the boxes.', '80%'),
])
def test_loose_figure_in_prose_is_found(sentence, figure):
    assert loose(sentence) == [figure]


@pytest.mark.parametrize('text', [
    'Tiles of 400 px, 800x1333 images, lr 0.01, 90k iterations.',
    'A header declaring 30,000 x 30,000 px; 4x larger pixels; 400 × 400 px.',
    'torch 2.13.0, mmdet 3.3.0, Python 3.11, IoU 0.5 / 0.4, score 0.3.',
    'Set `--timeout 30s` and run `sleep 5s`.',
    '```bash\necho 778 s 0.176\n```',
    'Warns when more than 10% of the boxes have no anchor.',
    'The tests assert agreement within 1e-3 px, scores to a relative 1e-5.',
    'Within 1e-3 px plus 1e-5 of the box; corners exact to 1e-6 m, tested.',
    'SGD, lr 1e-3, wd 1e-4, eps (1e-5); INT8 at least 1.5x the fp32 model.',
    'Run `pytest --atol 4.9e-4` or:\n```bash\nexport.py --tol 3e-6\n```',
    'The hardest 20% of the anchors, inside the 20-minute budget.',
    '<!-- figure: r.json#a -->778 s<!-- /figure --> and nothing else.',
    '<!-- benchmark: r.json -->\n| t |\n|---|\n| 1.5 s |\n<!-- /benchmark -->',
    '| alpha | paper AP |\n|---|---|\n| .25 | 34.0 |',
])
def test_numbers_no_machine_measured_pass(text):
    assert loose(text) == []


def test_loose_figure_in_a_table_column_is_found():
    text = ('| path | time | windows / s | × SAHI |\n|---|---|---|---|\n'
            '| windowed | 62.3 | 17.5 | 1.52 |\n')
    assert loose(text) == ['62.3', '17.5', '1.52']


def test_page_with_a_figure_disagreeing_with_its_record_fails(tmp_path):
    record(tmp_path, figures={'whole job s': '778'})
    good = ('Whole job: <!-- figure: run.json#whole job s -->778<!-- '
            '/figure --> s, the loss step <!-- figure: run.json#2/speed-up '
            '-->8.04x<!-- /figure --> faster.\n')
    page = tmp_path / 'page.md'
    page.write_text(good)
    assert report.update_page(str(page), check=True) == []
    page.write_text(good.replace('-->778<', '-->777<'))
    changed = report.update_page(str(page), check=True)
    assert changed == ["run.json#whole job s ('777' is '778' in the "
                       "record)"]
    assert report.update_page(str(page)) == changed  # rewritten ...
    assert page.read_text() == good  # ... to the record's value
    assert report.main(['update', str(page), '--check']) == 0


def test_figure_keyed_by_a_column_with_a_comparison_is_checked(tmp_path):
    """A column such as 'detections >= 0.3' (its '>' once hid the tag from
    the check, which then passed whatever value the page held)."""
    report.write_record(str(tmp_path / 'run.json'), report.table_record(
        'benchmarks/bench_x.py', 'AMD EPYC', ['raster', 'detections >= 0.3'],
        [['a.tif', '54']], argv=[]))
    page = tmp_path / 'page.md'
    tag = '<!-- figure: run.json#1/detections >= 0.3 -->{}<!-- /figure -->\n'
    page.write_text(tag.format('54'))
    assert report.update_page(str(page), check=True) == []
    page.write_text(tag.format('62'))
    assert report.update_page(str(page), check=True) == [
        "run.json#1/detections >= 0.3 ('62' is '54' in the record)"]


def test_page_with_a_hand_edited_table_fails(tmp_path):
    rec = record(tmp_path)
    page = tmp_path / 'page.md'
    block = ('<!-- benchmark: run.json -->\n' + report.render(rec) +
             '<!-- /benchmark -->\n')
    page.write_text(block)
    assert report.main(['update', str(page), '--check']) == 0
    page.write_text(block.replace('4.45x', '5.00x'))
    assert report.main(['update', str(page), '--check']) == 1


def test_figure_of_no_record_or_no_key_fails(tmp_path):
    record(tmp_path)
    page = tmp_path / 'page.md'
    page.write_text('<!-- figure: run.json#9/time -->1 s<!-- /figure -->\n')
    with pytest.raises(KeyError, match=r'run.json#9/time: no such cell'):
        report.update_page(str(page), check=True)
    page.write_text('<!-- figure: gone.json#a -->1 s<!-- /figure -->\n')
    with pytest.raises(FileNotFoundError):
        report.update_page(str(page), check=True)


def test_render_names_command_date_commit_and_cpu(tmp_path):
    rec = record(tmp_path)
    assert rec['provenance'] == 'measured' and 'source' not in rec
    first = report.render(rec).split('\n')[0]
    assert first.startswith(f'Measured by `python benchmarks/bench_x.py '
                            f'--quick`, {rec["date"][:10]}, commit '
                            'abc1234567, on AMD EPYC, 2 cores.')


def test_render_of_a_transcribed_record_says_so_first(tmp_path):
    rec = record(tmp_path, provenance='transcribed',
                 source='the closing note of stop 9.')
    first = report.render(rec).split('\n')[0]
    assert first.startswith('Transcribed (not written by the tool) from '
                            'the closing note of stop 9. The run: `python '
                            'benchmarks/bench_x.py --quick`, ')
    rows = report.render_rows([record(tmp_path, 'b.json'), rec])
    assert '- rows 1-2: Measured by `' in rows
    assert '- rows 3-4: Transcribed (not written by the tool) from ' in rows


@pytest.mark.parametrize('change, error', [
    (dict(provenance='estimated'), "provenance is 'estimated'; it must be"),
    (dict(provenance='transcribed'), 'a transcribed record needs "source"'),
    (dict(provenance='transcribed', source=' '),
     'a transcribed record needs "source"'),
    (dict(source='a closing note'), 'a measured record has no "source"'),
])
def test_record_with_an_invalid_provenance_is_refused(tmp_path, change,
                                                      error):
    with pytest.raises(ValueError, match=error):
        report.table_record('benchmarks/bench_x.py', 'cpu', ['a'], [['1']],
                            commit='c', **change)
    path = tmp_path / 'run.json'
    report.write_record(str(path), dict(record(tmp_path), **change))
    with pytest.raises(ValueError, match=re.escape(f'{path}: ') + error):
        report.read_record(str(path))
    page = tmp_path / 'page.md'
    page.write_text('<!-- benchmark: run.json -->\n<!-- /benchmark -->\n')
    with pytest.raises(ValueError, match=r'run\.json: ' + error):
        report.update_page(str(page), check=True)


def test_record_without_provenance_is_refused_naming_the_file(tmp_path):
    rec = record(tmp_path)
    del rec['provenance']
    path = tmp_path / 'old.json'
    report.write_record(str(path), rec)
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: not a benchmark record, it lacks ['provenance']")):
        report.read_record(str(path))
    with pytest.raises(ValueError, match='provenance is None'):
        report.render(rec)


def test_records_of_several_runs_render_as_one_table(tmp_path):
    a = record(tmp_path, 'a.json', cpu='Xeon', rows=[['8', '1 s', '5x']])
    b = record(tmp_path, 'b.json', cpu='EPYC',
               rows=[['8', '2 s', '4x'], ['100', '3 s', '8x']])
    text = report.render_rows([a, b], ['a.json', 'b.json'])
    assert '| 8 | 1 s | 5x |\n| 8 | 2 s | 4x |\n| 100 | 3 s | 8x |' in text
    assert '- row 1: Measured by `python benchmarks/bench_x.py --quick`' \
        in text
    assert 'on Xeon.' in text.split('\n- rows 2-3:')[0]
    assert '- rows 2-3: ' in text and 'on EPYC.' in text.split('rows 2-3')[1]
    c = record(tmp_path, 'c.json', columns=['a', 'b', 'c', 'd'],
               rows=[['1', '2', '3', '4']])
    with pytest.raises(ValueError, match="c.json: columns"):
        report.render_rows([a, c], ['a.json', 'c.json'])


def test_commit_is_the_clone_head_or_unknown(tmp_path):
    assert report.git_commit(str(tmp_path)) == 'unknown'  # not a clone
    env = dict(os.environ, GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@t',
               GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@t')

    def git(*args):
        return subprocess.run(('git', ) + args, cwd=tmp_path, env=env,
                              check=True, text=True,
                              stdout=subprocess.PIPE).stdout.strip()

    git('init', '-q')
    (tmp_path / 'f.txt').write_text('a')
    git('add', 'f.txt')
    git('commit', '-q', '-m', 'one')
    head = git('rev-parse', '--short=10', 'HEAD')
    assert report.git_commit(str(tmp_path)) == head
    (tmp_path / 'f.txt').write_text('b')
    assert report.git_commit(str(tmp_path)) == head + '-dirty'


def test_records_in_the_docs_have_every_field():
    folders = [osp.join(REPO, GUIDES, d) for d in ('speed', 'records')]
    paths = [osp.join(d, f) for d in folders for f in os.listdir(d)
             if f.endswith('.json')]
    assert paths
    for path in paths:
        rec = report.read_record(path)  # raises without a field or a
        with open(path) as f:           # valid provenance
            assert json.load(f)['commit']
        assert rec['date'][:4].isdigit()
        # where a transcribed record came from is its "source", said first
        # on the page, not a fact of the run's context
        assert 'source' not in rec.get('context', {}), path
        if rec['provenance'] == 'transcribed':
            assert not rec['source'].lower().startswith('transcribed'), path
