"""Every command line and Python name in README.md and docs/ is one the code
knows: what a page tells a reader to type is checked against the parsers.

Read from the pages (nothing is run):

* shell blocks (```bash, ```sh, ```shell; ```console lines after ``$ ``) and
  inline code spans that start with a program this checker knows
  (``mmretina ...``, ``mmretina-*``, ``python ...``, ``bash tools/...``,
  ``tools/x.py --flag``, ``ablate.py a``, ``pip ...``);
* per command (``\\`` continuations, ``&&``, ``|``, ``;``, ``VAR=x cmd``,
  comments, ``$(...)``, here-documents): the program exists (a command of
  :data:`mmretina.cli.main.COMMANDS`, a console script of ``setup.py``, a
  script of the repository, a ``python -m`` module, an external program of
  :data:`EXTERNAL`); every ``--flag`` is in that program's argparse parser,
  read by stopping its ``main(['--help'])`` at ``parse_args``; every value
  that can be checked (choices, ``type``) is accepted. Placeholders
  (``CONFIG``, ``N``, ``...``, ``<command>``, ``$VAR``) are not checked;
  ``[--opt A|B]`` checks each of A and B;
* ``tools/*.sh`` that pass their arguments to a Python tool (``${@:N}``) are
  followed into that tool: its fixed arguments (``--launcher pytorch``) and
  the page's are checked against the tool's parser;
* repository paths in commands and code spans (first folder in
  :data:`MUST_EXIST`) exist, unless the page writes the file first (a
  here-document, or a code block headed ``# configs/mine.py``);
* Python names: a code span ``mmretina.x.y`` or an API page's
  ``::: mmretina.x.y`` imports (longest module prefix,
  then attributes) or is a registered type (``mmretina.RetinaHead``);
  ``from mmretina.x import y`` in ```python blocks; ``type='mmretina.X'``.

:func:`test_checker_reports_each_kind_of_mistake` feeds the checker a page
with one mistake of each kind, so that it cannot pass by seeing nothing.
"""
import argparse
import ast
import contextlib
import difflib
import importlib
import importlib.util
import inspect
import os
import os.path as osp
import re
import runpy
import shlex
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# programs of other projects a page may tell the reader to run (only that
# they are named here is checked)
EXTERNAL = {
    'pip', 'pip3', 'git', 'curl', 'wget', 'hf', 'mkdocs', 'qgis', 'mkdir',
    'cp', 'mv', 'rm', 'cat', 'cd', 'ls', 'echo', 'export', 'tee', 'unzip',
    'tar', 'srun', 'sbatch', 'pytest', 'torchrun', 'nvidia-smi', 'gdalinfo',
    'ogr2ogr', 'deepforest', 'sahi', 'source', 'conda', 'docker'
}
# programs a page should no longer tell the reader to run
DEPRECATED = {
    'huggingface-cli': 'deprecated by huggingface_hub: write `hf download '
    'REPO --local-dir DIR` (huggingface_hub >= 0.34)',
}
# programs that run the command after their own options
WRAPPERS = {'nice': {'-n'}, 'time': set(), 'timeout': set(), 'env': set()}
PYTHONS = ('python', 'python3')
SHELLS = ('bash', 'sh')
# a path in a command or a code span whose first folder is one of these
# must exist (work_dirs/, data/, checkpoints/ are the reader's)
MUST_EXIST = ('mmretina', 'tools', 'configs', 'benchmarks', 'tests', 'docs',
              'requirements')
PATH_RE = re.compile(r'(?:\./)?((?:%s)/[\w./-]*)' % '|'.join(MUST_EXIST))
SHELL_BLOCKS = ('bash', 'sh', 'shell', 'console')
SEPARATORS = {'|', '||', '&&', ';', '&'}


def read(path: str) -> str:
    with open(osp.join(REPO, path), encoding='utf-8') as f:
        return f.read()


def pages() -> List[str]:
    """README.md and every markdown page under docs/."""
    out = ['README.md']
    for root, dirs, files in os.walk(osp.join(REPO, 'docs')):
        dirs.sort()
        out += sorted(
            osp.relpath(osp.join(root, f), REPO) for f in files
            if f.endswith('.md'))
    return out


# -------------------------------------------------------------- the parsers
class _Captured(Exception):

    def __init__(self, parser: argparse.ArgumentParser, known: bool):
        super().__init__()
        self.parser, self.known = parser, known


@contextlib.contextmanager
def _stop_at_parse():
    """``ArgumentParser.parse_args`` / ``parse_known_args`` raise
    :class:`_Captured` with the parser instead of parsing."""

    def parse_args(self, args=None, namespace=None):
        raise _Captured(self, known=False)

    def parse_known_args(self, args=None, namespace=None):
        raise _Captured(self, known=True)

    saved = (argparse.ArgumentParser.parse_args,
             argparse.ArgumentParser.parse_known_args, sys.argv)
    argparse.ArgumentParser.parse_args = parse_args
    argparse.ArgumentParser.parse_known_args = parse_known_args
    try:
        yield
    finally:
        (argparse.ArgumentParser.parse_args,
         argparse.ArgumentParser.parse_known_args, sys.argv) = saved


class Program:
    """A parser to check arguments against; ``forward``: the parser of the
    program that gets the arguments this one does not know."""

    def __init__(self, parser: argparse.ArgumentParser,
                 forward: Optional[argparse.ArgumentParser] = None):
        self.parser, self.forward = parser, forward


_PROGRAMS: Dict[str, Program] = {}


def _capture(key: str, call, argv0: str = 'prog',
             module: Optional[str] = None) -> Program:
    """The parser that ``call()`` (a ``main``) builds, without running it.
    A ``module`` whose parser passes on what it does not know
    (``parse_known_args``) to mmdet's script names it with
    ``mmdet_script()``: that script's parser checks the rest."""
    if key not in _PROGRAMS:
        with _stop_at_parse():
            sys.argv = [argv0, '--help']
            try:
                call()
            except _Captured as c:
                captured = c
            else:
                raise AssertionError(f'{key}: main() parsed no arguments')
        forward = None
        script = getattr(sys.modules.get(module), 'mmdet_script', None)
        if captured.known and script is not None:
            path = script()
            forward = _capture(
                path, lambda: runpy.run_path(path)['parse_args'](),
                path).parser
        _PROGRAMS[key] = Program(captured.parser, forward)
    return _PROGRAMS[key]


def _main_of(module: str, func: str = 'main'):
    """``main(['--help'])``, or ``main()`` with ``sys.argv`` for a main
    that reads ``sys.argv`` itself."""
    main = getattr(importlib.import_module(module), func)
    takes_argv = bool(inspect.signature(main).parameters)
    return (lambda: main(['--help'])) if takes_argv else main


def module_program(module: str, func: str = 'main') -> Program:
    """The parser of ``python -m module`` (a ``main(argv)`` module)."""
    return _capture(f'{module}:{func}', _main_of(module, func),
                    module=module)


def console_scripts() -> Dict[str, str]:
    """``setup.py``'s console scripts, ``name -> module:function``, read
    from its ``CONSOLE_SCRIPTS`` list (setup.py itself is not run)."""
    tree = ast.parse(read('setup.py'))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                getattr(t, 'id', None) == 'CONSOLE_SCRIPTS'
                for t in node.targets):
            entries = ast.literal_eval(node.value)
            return dict(
                tuple(s.strip() for s in e.split('=', 1)) for e in entries)
    raise AssertionError('setup.py: no CONSOLE_SCRIPTS list')


def script_program(path: str) -> Program:
    """The parser of ``python path``: a tools/ shim's mmretina.cli module,
    else the script's own ``main`` (its ``__main__`` block is not run)."""
    text = read(path)
    m = re.search(r'^from (mmretina\.cli\.\w+) import main$', text, re.M)
    if m:
        return module_program(m.group(1))
    if path not in _PROGRAMS:
        # loaded under another name: its __main__ block does not run
        name = '_doc_commands_' + re.sub(r'\W', '_', path)
        spec = importlib.util.spec_from_file_location(
            name, osp.join(REPO, path))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        # run from the repository root, as the pages do (a benchmark reads
        # its config at import)
        folder, cwd = osp.dirname(osp.join(REPO, path)), os.getcwd()
        sys.path.insert(0, folder)
        os.chdir(REPO)
        try:
            spec.loader.exec_module(sys.modules[name])
            _capture(path, _main_of(name), path, module=name)
        finally:
            os.chdir(cwd)
            sys.path.remove(folder)
    return _PROGRAMS[path]


def shell_forward(path: str) -> Optional[Tuple[int, str, List[str]]]:
    """For a tools/*.sh that hands ``${@:N}`` to a Python script: (N - 1
    arguments it takes itself, the script, the script's fixed arguments)."""
    text = read(path).replace('\\\n', ' ')
    # PY_ARGS=${@:5}: "${PY_ARGS}" forwards from the fifth argument
    forwards = {r'"?\$\{@:(\d+)\}"?': None}
    for var, n in re.findall(r'^(\w+)=\$\{@:(\d+)\}', text, re.M):
        forwards[r'"?\$\{?%s\}?"?' % var] = n
    for line in text.splitlines():
        m = re.search(r'\$\(dirname "?\$0"?\)/([\w/]+\.py)\s+(.*)$', line)
        if not m:
            continue
        for pattern, n in forwards.items():
            fwd = re.search(pattern, m.group(2))
            if fwd:
                script = osp.normpath(
                    osp.join(osp.dirname(path), m.group(1)))
                return (int(n or fwd.group(1)) - 1, script,
                        shlex.split(m.group(2)[:fwd.start()]))
    return None


# ------------------------------------------------------------ Python names
def _registries():
    from mmengine.registry import Registry

    import mmretina.registry as reg
    return [r for r in vars(reg).values() if isinstance(r, Registry)]


def resolve_name(dotted: str) -> Optional[str]:
    """None when ``mmretina.a.b.C`` exists, else why not."""
    parts = dotted.split('.')
    for k in range(len(parts), 0, -1):
        module_name = '.'.join(parts[:k])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue
            if e.name and not e.name.startswith('mmretina'):
                return None  # a dependency this machine lacks
            return f'importing {module_name}: {e}'
        for i, attr in enumerate(parts[k:], start=k):
            if not hasattr(obj, attr):
                if i == 1 and any(
                        attr in r.module_dict for r in _registries()):
                    return None  # mmretina.RetinaHead: a registered type
                return (f'{".".join(parts[:i])} has no attribute {attr!r}')
            obj = getattr(obj, attr)
        return None
    return f'no module {parts[0]}'


def resolve_registered(name: str) -> Optional[str]:
    """None when ``type='mmretina.<name>'`` builds, else why not."""
    import mmretina  # noqa: F401  (registers the modules)
    if any(name in r.module_dict for r in _registries()):
        return None
    return f"type='mmretina.{name}' is registered in no mmretina registry"


# ------------------------------------------------------------- the checker
def is_placeholder(token: str) -> bool:
    """CONFIG, N, IMAGE_OR_DIR, ..., <command>, $VAR, $(...)."""
    return (re.fullmatch(r'[A-Z][A-Z0-9_]*', token) is not None
            or any(s in token for s in ('...', '\u2026', '<', '>', '$', '*')))


def is_flag(token: str) -> bool:
    return (token.startswith('-') and token != '-'
            and re.fullmatch(r'-\d*\.?\d+', token) is None)


def strip_brackets(token: str) -> str:
    """``[--resume`` -> ``--resume``, ``[CKPT]]`` -> ``CKPT``; ``.[geo]``
    is kept."""
    token = token.lstrip('[')
    while token.endswith(']') and token.count(']') > token.count('['):
        token = token[:-1]
    return token


def strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in '\'"':
            quote = ch
        elif ch == '#' and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _nargs(action: argparse.Action) -> Tuple[int, float]:
    n = action.nargs
    if n is None:
        return 1, 1
    if isinstance(n, int):
        return n, n
    return {'?': (0, 1), '*': (0, float('inf')), '+': (1, float('inf'))}.get(
        n, (0, float('inf')))


class PageChecker:
    """The problems of one page, ``page:line: what``."""

    def __init__(self, page: str, text: str):
        self.page, self.text = page, text
        self.problems: List[str] = []
        self.created = set()  # paths the page writes before naming them
        self.checked = 0  # commands whose arguments met a parser
        # a code span in prose names a flag (`tools/infer.py --tile`) or a
        # script (`tools/dist_train.sh`) without its values
        self.inline = False

    def report(self, line: int, msg: str) -> None:
        self.problems.append(f'{self.page}:{line}: {msg}')

    # the page
    def run(self) -> List[str]:
        fence = re.compile(r'^```(\w*)[^\n]*\n(.*?)^```[ \t]*$', re.S | re.M)
        prose, pos = [], 0
        for m in fence.finditer(self.text):
            prose.append(self.text[pos:m.start()])
            prose.append('\n' * self.text.count('\n', m.start(), m.end()))
            pos = m.end()
            line = self.text.count('\n', 0, m.start(2)) + 1
            lang, body = m.group(1), m.group(2)
            head = re.match(r'#\s*((?:%s)/[\w./-]+)\s*$' % '|'.join(
                MUST_EXIST), body.split('\n', 1)[0])
            if head:
                self.created.add(head.group(1))
            if lang in SHELL_BLOCKS:
                self.check_shell(body, line, console=lang == 'console')
            elif lang == 'python':
                self.check_python(body, line)
        prose.append(self.text[pos:])
        self.check_prose(''.join(prose))
        return self.problems

    def check_prose(self, prose: str) -> None:
        # the API reference's mkdocstrings directives, `::: mmretina.x`
        for m in re.finditer(r'^::: *(\S+)', prose, re.M):
            why = resolve_name(m.group(1))
            if why:
                self.report(prose.count('\n', 0, m.start()) + 1,
                            f'::: {m.group(1)}: {why}')
        for m in re.finditer(r'(?<!`)`([^`]+?)`(?!`)', prose):
            if '\n\n' in m.group(1):
                continue
            line = prose.count('\n', 0, m.start()) + 1
            span = ' '.join(m.group(1).split())
            name = re.match(r'mmretina(?:\.\s*\w+)+', m.group(1))
            if name and not re.search(r'\.(py|pth|onnx|json|md)$',
                                      name.group(0)):
                dotted = re.sub(r'\s', '', name.group(0))
                why = resolve_name(dotted)
                if why:
                    self.report(line, f'`{dotted}`: {why}')
            for reg in re.findall(
                    r'''\btype=['"]mmretina\.(\w+)['"]''', span):
                why = resolve_registered(reg)
                if why:
                    self.report(line, why)
            if self.is_command(span):
                self.check_line(span, line, inline=True)
            elif PATH_RE.fullmatch(span):
                self.check_path_or_name(span, line)

    def is_command(self, span: str) -> bool:
        words = [w for w in span.split()
                 if not re.match(r'[A-Za-z_]\w*=', w)]
        if not words:
            return False
        first = words[0]
        return (first in ('mmretina', ) + PYTHONS + SHELLS
                or first.startswith('mmretina-') or first in EXTERNAL
                or first in DEPRECATED or first in WRAPPERS
                and len(words) > 1 and self.is_command(' '.join(words[1:]))
                or (re.match(r'(tools|benchmarks)/\S+\.(py|sh)$', first)
                    is not None) or self.by_basename(first) is not None)

    @staticmethod
    def by_basename(word: str) -> Optional[str]:
        """``ablate.py`` -> tools/analysis_tools/ablate.py (when only one
        script of tools/ and benchmarks/ has that name)."""
        if not re.fullmatch(r'\w+\.(py|sh)', word):
            return None
        found = [
            osp.relpath(osp.join(root, word), REPO)
            for top in ('tools', 'benchmarks')
            for root, _, files in os.walk(osp.join(REPO, top))
            if word in files
        ]
        return found[0] if len(found) == 1 else None

    def check_python(self, code: str, line: int) -> None:
        try:
            nodes = list(ast.walk(ast.parse(code)))
        except SyntaxError:
            # a sketch with elisions (`dict(type=..., ...)`): its imports
            # and strings, line by line
            nodes = []
            for n, text in enumerate(code.split('\n')):
                pad = '\n' * n  # the line's number in the block
                try:
                    tree = ast.parse(pad + text.strip())
                except SyntaxError:
                    tree = ast.parse(pad + repr(
                        re.findall(r"""['"](mmretina\.\w+)['"]""", text)))
                nodes += ast.walk(tree)
        for node in nodes:
            names = []
            if isinstance(node, ast.ImportFrom) and (node.module or '').split(
                    '.')[0] == 'mmretina' and not node.level:
                names = [f'{node.module}.{a.name}' for a in node.names
                         if a.name != '*']
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names
                         if a.name.split('.')[0] == 'mmretina']
            elif isinstance(node, ast.Constant) and isinstance(
                    node.value, str):
                m = re.fullmatch(r'mmretina\.(\w+)', node.value)
                if m and m.group(1)[:1].isupper():
                    why = resolve_registered(m.group(1))
                    if why:
                        self.report(line + node.lineno - 1, why)
            for dotted in names:
                why = resolve_name(dotted)
                if why:
                    self.report(line + node.lineno - 1, f'{dotted}: {why}')

    # shell
    def check_shell(self, body: str, first: int, console=False) -> None:
        lines = body.split('\n')
        i = 0
        while i < len(lines):
            start, text = i, lines[i]
            i += 1
            if console:
                if not text.startswith('$ '):
                    continue
                text = text[2:]
            while text.endswith('\\') and i < len(lines):
                text = text[:-1] + ' ' + re.sub(r'^> ', '', lines[i])
                i += 1
            heredoc = re.search(r"<<-?\s*(['\"]?)(\w+)\1",
                                strip_comment(text))
            if heredoc:
                doc = []
                while i < len(lines) and lines[i].strip() != heredoc.group(2):
                    doc.append(lines[i])
                    i += 1
                i += 1
                if re.match(r'\s*(python3?)\s+-(\s|$)', text):
                    try:
                        compile('\n'.join(doc), '<here-document>', 'exec')
                    except SyntaxError as e:
                        self.report(first + start + (e.lineno or 1),
                                    f'python here-document: {e.msg}')
                text = text[:heredoc.start()] + text[heredoc.end():]
            self.check_line(text, first + start)

    def check_line(self, text: str, line: int, inline=False) -> None:
        code = strip_comment(text).strip()
        # $(...): checked as a command of its own, a placeholder here
        while '$(' in code:
            start = code.index('$(')
            depth, end = 0, start + 1
            for end in range(start + 1, len(code)):
                depth += {'(': 1, ')': -1}.get(code[end], 0)
                if depth == 0:
                    break
            self.check_line(code[start + 2:end], line)
            code = code[:start] + '$SUBST' + code[end + 1:]
        if not code:
            return
        self.inline = inline
        try:
            tokens = shlex.split(code)
        except ValueError as e:
            self.report(line, f'{code!r}: {e}')
            return
        segment, depth = [], 0
        for tok in tokens + [';']:
            if tok in SEPARATORS and depth <= 0 or tok == ';':
                self.check_command(segment, line, inline)
                segment = []
                continue
            if tok.endswith(';') and depth <= 0 and len(tok) > 1:
                self.check_command(segment + [tok[:-1]], line, inline)
                segment = []
                continue
            depth += tok.count('[') - tok.count(']')
            segment.append(tok)

    def check_command(self, tokens: List[str], line: int,
                      inline: bool) -> None:
        # redirections: > FILE creates FILE
        words, i = [], 0
        while i < len(tokens):
            tok = tokens[i]
            m = re.fullmatch(r'(\d*|&)(>>?|<)(&\d+)?(\S*)', tok)
            if m and not re.fullmatch(r'<[^<>]+>', tok):  # not <command>
                target = m.group(4) or (tokens[i + 1]
                                        if not m.group(3)
                                        and i + 1 < len(tokens) else '')
                if not m.group(4) and not m.group(3):
                    i += 1
                if '>' in m.group(2) and target:
                    self.created.add(target)
            else:
                words.append(strip_brackets(tok))
            i += 1
        while words and re.match(r'[A-Za-z_]\w*=', words[0]):
            words.pop(0)
        if not words:
            return
        prog, args = words[0], words[1:]
        for w in words:
            self.check_path(w.split('=', 1)[-1], line)
        if prog in WRAPPERS:
            while args and (is_flag(args[0]) or re.match(
                    r'[A-Za-z_]\w*=|\d+$', args[0])):
                takes = args[0] in WRAPPERS[prog]
                args = args[2 if takes else 1:]
            return self.check_command(args, line, inline)
        if prog in PYTHONS:
            return self.check_python_command(args, line)
        if prog in SHELLS:
            if not args or is_placeholder(args[0]):
                return
            return self.check_script(args[0], args[1:], line)
        if prog == 'mmretina':
            return self.check_mmretina(args, line)
        scripts = console_scripts()
        if prog in scripts:
            program = module_program(*scripts[prog].split(':'))
            return self.check_args(program, args, line, prog)
        if re.match(r'(\./)?(tools|benchmarks)/', prog):
            return self.check_script(prog, args, line)
        if prog in DEPRECATED:
            return self.report(line, f'{prog}: {DEPRECATED[prog]}')
        if prog in EXTERNAL or is_placeholder(prog):
            return
        path = self.by_basename(prog) if inline else None
        if path:
            return self.check_script(path, args, line)
        self.report(line, f'unknown program {prog!r} (not a command of '
                    'mmretina, setup.py or the repository; an external one '
                    'goes in EXTERNAL of tests/docs/test_doc_commands.py)')

    def check_python_command(self, args: List[str], line: int) -> None:
        while args and args[0] in ('-u', '-O', '-B', '-I', '-E', '-X', '-W'):
            args = args[2 if args[0] in ('-X', '-W') else 1:]
        if not args or args[0] == '-':
            return
        if args[0] == '-c':
            try:
                compile(args[1] if len(args) > 1 else '', '<-c>', 'exec')
            except SyntaxError as e:
                self.report(line, f'python -c: {e.msg}')
            return
        if args[0] == '-m':
            module = args[1] if len(args) > 1 else ''
            if module == 'mmretina':
                return self.check_mmretina(args[2:], line)
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError as e:
                found = not module.startswith(e.name or '')
            if not found:
                return self.report(line, f'python -m {module}: no such '
                                   'module')
            if module.startswith('mmretina.cli.'):
                self.check_args(module_program(module), args[2:], line,
                                f'python -m {module}')
            return
        if is_placeholder(args[0]):
            return
        self.check_script(args[0], args[1:], line)

    def check_script(self, path: str, args: List[str], line: int) -> None:
        if is_placeholder(path):  # benchmarks/*.py
            return
        path = osp.normpath(path)
        if not osp.isfile(osp.join(REPO, path)):
            # (a path under MUST_EXIST is reported by check_path)
            if path not in self.created and not PATH_RE.fullmatch(path):
                self.report(line, f'{path}: no such script in the '
                            'repository')
            return
        if path.endswith('.py'):
            return self.check_args(script_program(path), args, line, path)
        fwd = shell_forward(path)
        if fwd is None:
            return
        own, script, fixed = fwd
        if self.inline and not args:
            return
        if len(args) < own and not any(map(is_placeholder, args)):
            return self.report(line, f'{path} takes {own} arguments before '
                               f'the options of {script}; got {args}')
        if any(is_flag(a) for a in args[:own]):
            return self.report(line, f'{path}: its first {own} arguments '
                               f'are its own (no options before them): '
                               f'{args[:own]}')
        self.check_args(script_program(script), fixed + args[own:], line,
                        f'{path} -> {script}')

    def check_mmretina(self, args: List[str], line: int) -> None:
        from mmretina.cli import main as cli
        table, prog = cli.COMMANDS, ['mmretina']
        while True:
            if not args or is_placeholder(args[0]) or is_flag(args[0]):
                # the options of a level of commands: mmretina --version
                level = list(prog[1:])
                program = _capture(' '.join(prog),
                                   lambda: cli.main(level + ['--help']))
                return self.check_args(program, args, line, ' '.join(prog))
            name = args.pop(0)
            if name not in table:
                close = difflib.get_close_matches(name, table)
                return self.report(
                    line, f'{" ".join(prog)} {name}: no such command (known: '
                    f'{", ".join(table)})' +
                    (f'; did you mean {close[0]}?' if close else ''))
            prog.append(name)
            entry = table[name]
            if isinstance(entry, tuple):
                program = module_program(entry[0])
                return self.check_args(program, args, line, ' '.join(prog))
            table = entry

    def check_args(self, program: Program, argv: Sequence[str], line: int,
                   where: str, parser=None) -> None:
        parser = parser or program.parser
        self.checked += 1
        positionals = [a for a in parser._actions if not a.option_strings]
        slot, i = 0, 0
        while i < len(argv):
            tok = argv[i]
            i += 1
            if tok == '--':
                break
            if not is_flag(tok):
                if slot >= len(positionals):
                    continue
                action = positionals[slot]
                if isinstance(action, argparse._SubParsersAction):
                    if is_placeholder(tok):
                        return
                    if tok not in action.choices:
                        return self.report(
                            line, f'{where}: {tok!r} is not one of '
                            f'{", ".join(action.choices)}')
                    return self.check_args(Program(action.choices[tok]),
                                           argv[i:], line, f'{where} {tok}')
                self.check_value(parser, action, tok, line, where)
                if action.nargs not in ('*', '+', argparse.REMAINDER):
                    slot += 1
                continue
            flag, eq, value = tok.partition('=')
            owner, action = parser, parser._option_string_actions.get(flag)
            if action is None and program.forward is not None:
                owner = program.forward
                action = owner._option_string_actions.get(flag)
            if action is None:
                if not is_placeholder(flag):
                    known = list(parser._option_string_actions) + list(
                        getattr(program.forward, '_option_string_actions',
                                ()))
                    close = difflib.get_close_matches(flag, known, n=1)
                    self.report(
                        line, f'{where}: unknown option {flag}' +
                        (f' (did you mean {close[0]}?)' if close else ''))
                continue
            lo, hi = _nargs(action)
            if eq:
                values = [value]
                if hi == 0:
                    self.report(line, f'{where}: {flag} takes no value')
            else:
                values = []
                while len(values) < hi and i < len(argv) and not is_flag(
                        argv[i]):
                    values.append(argv[i])
                    i += 1
                if len(values) < lo and not (self.inline and i == len(argv)):
                    self.report(line, f'{where}: {flag} needs {lo} '
                                f'value(s), got {values}')
            for v in values:
                self.check_value(owner, action, v, line, where)

    def check_value(self, parser, action, value: str, line: int,
                    where: str) -> None:
        for v in value.split('|'):
            if not v or is_placeholder(v):
                continue
            name = '/'.join(action.option_strings) or action.dest
            try:
                parser._check_value(action, parser._get_value(action, v))
            except argparse.ArgumentError as e:
                self.report(line, f'{where}: {name} {v!r}: {e.message}')
            except Exception as e:  # a type function's own error
                self.report(line, f'{where}: {name} {v!r}: {e}')

    def check_path_or_name(self, span: str, line: int) -> None:
        """`tools/train.py`, `configs/_base_/`, or a function of a script,
        `benchmarks/bench_bf16.make_batch`."""
        module, _, name = span.rpartition('.')
        script = osp.join(REPO, module + '.py')
        if module and osp.isfile(script) and re.fullmatch(r'[A-Za-z_]\w*',
                                                          name):
            if name not in ('py', 'sh', 'txt', 'md', 'yml', 'json'):
                tree = ast.parse(read(module + '.py'))
                if not any(getattr(n, 'name', None) == name
                           for n in tree.body):
                    self.report(line, f'{module}.py defines no {name}')
                return
        if re.search(r'\.\w+$|/$', span):
            self.check_path(span, line)

    def check_path(self, word: str, line: int) -> None:
        m = PATH_RE.fullmatch(word)
        if not m or is_placeholder(word):
            return
        path = m.group(1).rstrip('/')
        if osp.exists(osp.join(REPO, path)) or any(
                path == c or path.startswith(c.rstrip('/') + '/')
                for c in self.created):
            return
        self.report(line, f'{path}: no such file or folder in the '
                    'repository')


def check_page(page: str, text: Optional[str] = None) -> List[str]:
    return PageChecker(page, read(page) if text is None else text).run()


# ------------------------------------------------------------------- tests
@pytest.mark.parametrize('page', pages())
def test_page_commands_and_names_exist(page):
    problems = check_page(page)
    assert not problems, '\n'.join(problems)


BAD_PAGE = '''\
# A page with one mistake of each kind

```bash
mmretina-nonesuch --help
python tools/no_such_tool.py CONFIG
mmretina frobnicate CONFIG
python tools/train.py CONFIG --no-such-flag
python tools/infer.py IMAGE CONFIG CKPT --merge average
python tools/analysis_tools/analyze_anchors.py CONFIG --max-images many
bash tools/dist_train.sh CONFIG 2 --amp --epochz 3
huggingface-cli download weecology/deepforest-tree
python -m mmretina.no_such_module
```

Prose: `mmretina.structures.no_such_function` and `tools/gone.py` and
`mmretina predict IMAGE CONFIG CKPT --tile -5`, `benchmarks/report.nothing`.

::: mmretina.nowhere

```python
from mmretina.models import NoSuchHead
model = dict(type='mmretina.NoSuchHead', ...)  # an elided sketch
```
'''

EXPECTED = [
    (4, "unknown program 'mmretina-nonesuch'"),
    (5, 'tools/no_such_tool.py: no such file'),
    (6, 'mmretina frobnicate: no such command'),
    (7, 'unknown option --no-such-flag'),
    (8, "--merge 'average': invalid choice"),
    (9, "--max-images 'many': invalid int value"),
    (10, 'unknown option --epochz'),
    (11, 'huggingface-cli: deprecated'),
    (12, 'python -m mmretina.no_such_module: no such module'),
    (15, "`mmretina.structures.no_such_function`: mmretina.structures has "
     "no attribute 'no_such_function'"),
    (15, 'tools/gone.py: no such file'),
    (16, "--tile '-5'"),
    (16, 'benchmarks/report.py defines no nothing'),
    (18, "::: mmretina.nowhere: mmretina has no attribute 'nowhere'"),
    (21, 'mmretina.models.NoSuchHead'),
    (22, "type='mmretina.NoSuchHead' is registered in no"),
]


def test_checker_reports_each_kind_of_mistake():
    problems = check_page('bad.md', BAD_PAGE)
    missing = [(n, s) for n, s in EXPECTED
               if not any(p.startswith(f'bad.md:{n}:') and s in p
                          for p in problems)]
    assert not missing, 'not reported: %s\nreported:\n%s' % (
        missing, '\n'.join(problems))
    # and nothing else: the correct parts of the lines pass
    assert len(problems) == len(EXPECTED), '\n'.join(problems)


GOOD_PAGE = '''\
```python
# configs/mine.py
from mmretina.inference import run
```

```bash
# a comment; the continuation, env, &&, |, $(...), placeholders, [options]
OMP_NUM_THREADS=1 python tools/train.py configs/mine.py \\
    [--work-dir DIR] [--resume [CKPT]] --amp && echo done | tee log.txt
python tools/test.py CONFIG $(cat work_dirs/x/last_checkpoint) --out r.pkl
python tools/infer.py IMAGE CONFIG CKPT [--merge nms|wbf] --tile=400
bash tools/dist_infer.sh CONFIG CKPT INPUT 2 --out-dir out/ --bands 1,2,3
mmretina analyze logs plot_curve LOG [...] --keys loss --out c.png
python tools/analysis_tools/ablate.py a --epochs 2 --variants x y
python -m mmretina --version; mmretina <command> --help
nice -n 5 mmretina env
cat > configs/mine2.py <<'EOF'
_base_ = './retinanet_r50_fpn_1x_coco.py'
EOF
python tools/train.py configs/mine2.py
```

```console
$ mmretina analyze ablate list
mmretina output is not a command --nor-a-flag
```

Prose: `tools/test.py --tile`, `ablate.py e --table-only`,
`mmretina.RetinaHead`, `pytest tests`, `configs/_base_/`,
`benchmarks/report.main`, `benchmarks/*.py`.
'''


def test_checker_accepts_a_correct_page():
    checker = PageChecker('good.md', GOOD_PAGE)
    assert checker.run() == []
    assert checker.checked >= 12  # every line met its parser
