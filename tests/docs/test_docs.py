"""The README and the pages under docs/: every relative link and anchor
resolves, every repository path they name exists, every docs/ path named in
the code exists, and the site's nav lists each page once.

These checks need nothing but the files; ``mkdocs build --strict`` (run by
``.ci/run``) checks the same links again when it renders the site, plus the
API reference built from the docstrings.
"""
import os
import os.path as osp
import re
import subprocess
import sys
import unicodedata

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TEST_COMMAND = 'bash tools/run_tests.sh'
# paths the pages name that the reader creates (tutorial files)
CREATED_BY_READER = {'configs/mine.py'}
# top-level folders whose paths, written in backticks, must exist
REPO_DIRS = ('mmretina', 'tools', 'configs', 'benchmarks', 'tests',
             'requirements', 'docs')


def repo_files(top):
    """Files under the repository folder ``top``, relative to the root."""
    out = []
    for root, dirs, files in os.walk(osp.join(REPO, top)):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        out += [osp.relpath(osp.join(root, f), REPO) for f in files]
    return sorted(out)


def pages():
    """README.md and every markdown page under docs/."""
    return ['README.md'] + [
        f for f in repo_files('docs') if f.endswith('.md')]


def read(path):
    with open(osp.join(REPO, path), encoding='utf-8') as f:
        return f.read()


def strip_code(text):
    """The text without fenced code blocks (their brackets are code)."""
    return re.sub(r'^```.*?^```', '', text, flags=re.S | re.M)


def slugify(title):
    """Python-Markdown's toc anchor of a heading (what mkdocs links to)."""
    title = re.sub(r'`|\*\*', '', title)
    title = unicodedata.normalize('NFKD', title).encode(
        'ascii', 'ignore').decode('ascii')
    title = re.sub(r'[^\w\s-]', '', title).strip().lower()
    return re.sub(r'[-\s]+', '-', title)


def anchors(path):
    return {
        slugify(m.group(1))
        for m in re.finditer(r'^#+ (.*)$', strip_code(read(path)), re.M)
    }


def links(path):
    """Relative link targets [text](target) of a page, code excluded."""
    text = re.sub(r'`[^`\n]*`', '', strip_code(read(path)))
    return [
        t for t in re.findall(r'\]\(([^)\s]+)\)', text)
        if not re.match(r'[a-z]+:', t)
    ]


def test_readme_is_a_front_page_with_the_test_command():
    readme = read('README.md')
    assert len(readme.splitlines()) <= 150, 'README.md: keep it a front page'
    assert f'`{TEST_COMMAND}`' in readme
    ci = read('.ci/run')
    assert re.search(rf'^{re.escape(TEST_COMMAND)}\b', ci, re.M), (
        '.ci/run must run the README\'s test command')
    assert 'mkdocs build --strict' in ci
    for term in ('custom_imports', "type='mmretina.RetinaHead'",
                 'bash tools/run_demo.sh'):
        assert term in readme


@pytest.mark.parametrize('page', pages())
def test_links_and_anchors_resolve(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition('#')
        dest = osp.normpath(osp.join(osp.dirname(page), path)) if path \
            else page
        if not osp.exists(osp.join(REPO, dest)):
            broken.append(f'{target} (no file {dest})')
        elif anchor and dest.endswith('.md') and anchor not in anchors(dest):
            broken.append(f'{target} (no heading with anchor #{anchor} '
                          f'in {dest})')
    assert not broken, f'{page}: broken links: {broken}'


@pytest.mark.parametrize('page', pages())
def test_named_repository_paths_exist(page):
    """`tools/train.py`, `configs/...`: what a page tells the reader to
    run or read is there (catches pages left behind by a move)."""
    # a file (with its extension) or a folder (with its slash); not
    # `benchmarks/bench_bf16.make_batch`, a function
    named = re.findall(
        r'`((?:%s)/[\w./-]*(?:\.(?:py|sh|txt|md|yml|json)|/))`' %
        '|'.join(REPO_DIRS), read(page))
    missing = sorted({
        p for p in named if p not in CREATED_BY_READER
        and not osp.exists(osp.join(REPO, p.rstrip('/')))
    })
    assert not missing, f'{page} names paths that do not exist: {missing}'


def test_docs_paths_named_in_the_code_exist():
    """Comments, messages and tests that point to a docs page."""
    missing = []
    code = [f for top in REPO_DIRS if top != 'docs'
            for f in repo_files(top)] + ['setup.py', '.ci/run']
    for f in code:
        if not f.endswith(('.py', '.sh', '.md', '.yml', '.txt', '/run')):
            continue
        for p in re.findall(r'\bdocs/[\w/.-]*\w\.md\b', read(f)):
            if not osp.isfile(osp.join(REPO, p)):
                missing.append(f'{f}: {p}')
    assert not missing, f'docs pages named but absent: {missing}'


def test_site_nav_lists_every_page_once():
    with open(osp.join(REPO, 'mkdocs.yml')) as f:
        # mkdocs.yml may hold !!python/name tags; only nav is read here
        cfg = yaml.load(f, Loader=yaml.BaseLoader)

    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for v in node.values():
                yield from walk(v)
        else:
            for v in node:
                yield from walk(v)

    nav = list(walk(cfg['nav']))
    assert len(nav) == len(set(nav)), 'a page is twice in the nav'
    on_disk = {p[len('docs/'):] for p in pages() if p.startswith('docs/')}
    assert set(nav) == on_disk, (
        f'not in the nav: {sorted(on_disk - set(nav))}; in the nav but not '
        f'in docs/: {sorted(set(nav) - on_disk)}')


@pytest.mark.parametrize('page', ['speed.md', 'large_rasters.md'])
def test_tables_are_their_benchmark_records(page):
    """The guides' figure tables are renderings of the benchmarks' JSON
    records (benchmarks/report.py); a hand edit or a new record without
    ``update`` fails here."""
    page = osp.join('docs', 'user_guides', page)
    assert '<!-- benchmark: ' in read(page)
    proc = subprocess.run(
        [sys.executable, osp.join('benchmarks', 'report.py'), 'update',
         page, '--check'], cwd=REPO, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    assert proc.returncode == 0, (
        f'{proc.stdout}run: python benchmarks/report.py update {page}')
