"""``MMRetinaRegistry``: mmengine's ``Registry`` with messages that name
what went wrong. ``mmretina/registry.py`` builds our child registries with it.

Two messages differ from mmengine's:

* an unknown name (``type='mmretina.RetinaHeadd'``) raises a ``KeyError``
  that lists what *is* registered in our registry and suggests close names,
  instead of mmengine's generic "is not in the mmdet::model registry";
* a wrong argument to one of our modules (``type='mmretina.FocalLoss',
  gama=2.0``) raises a ``TypeError`` that names ``mmretina.FocalLoss`` (not
  only ``FocalLoss``, which mmdet has too), the bad argument, a close valid
  one and the full argument list.
"""
import difflib
import functools
import inspect
from typing import Any, Callable, List, Optional, Tuple, Type, Union

from mmengine.registry import Registry

__all__ = ['MMRetinaRegistry']


class MMRetinaRegistry(Registry):
    """mmengine ``Registry`` with messages that name what went wrong.

    Lookup, build and scoping are mmengine's, unchanged. Differences:

    * ``get(name)`` raises ``KeyError`` (listing our names) instead of
      returning ``None`` when ``name`` is neither ours nor an ancestor's.
      mmdet's registries reach this ``get`` for every ``mmretina.X`` they
      resolve, so a typo in a config fails here with the list. A name with
      another scope (``'mmdet.X'``) still returns ``None`` as in mmengine,
      and ``name in registry`` still answers ``False``.
    * classes registered here get their ``__init__`` wrapped so that an
      argument the signature does not accept raises a ``TypeError`` naming
      ``mmretina.<Class>``, the argument and the accepted ones. TypeErrors
      raised *inside* a valid call pass through untouched.
    """

    def get(self, key: str) -> Optional[Type]:
        obj = super().get(key)
        if obj is None:
            scope, real_key = self.split_scope_key(key)
            if scope is None or scope == self.scope:
                raise KeyError(self._unknown_name_message(real_key))
        return obj

    def __contains__(self, key: str) -> bool:
        try:
            return super().__contains__(key)
        except KeyError:
            return False

    def _unknown_name_message(self, name: str) -> str:
        ours = sorted(self.module_dict)
        inherited = set()
        parent = self.parent
        while parent is not None:
            inherited.update(parent.module_dict)
            parent = parent.parent
        close = difflib.get_close_matches(name, ours, n=3, cutoff=0.6)
        hint = ''
        if close:
            hint = ' Did you mean ' + ' or '.join(
                f"'{self.scope}.{c}'" for c in close) + '?'
        else:
            close = difflib.get_close_matches(
                name, sorted(inherited), n=3, cutoff=0.75)
            if close:
                hint = (' Did you mean ' +
                        ' or '.join(f"'{c}'" for c in close) +
                        f' (mmdet\'s, written without the "{self.scope}." '
                        'prefix)?')
        parents = f" nor in {self.parent.scope}'s" if self.parent else ''
        return (f"'{self.scope}.{name}' is not registered in {self.scope}'s "
                f'{self.name} registry{parents}.{hint} {self.scope} '
                f"{self.name}s: {', '.join(ours) if ours else '(none)'}.")

    def _register_module(self,
                         module: Type,
                         module_name: Optional[Union[str, List[str]]] = None,
                         force: bool = False) -> None:
        super()._register_module(module, module_name, force)
        if inspect.isclass(module):
            name = module_name if isinstance(module_name, str) else None
            _check_init_arguments(module, f'{self.scope}.'
                                  f'{name or module.__name__}')


def _check_init_arguments(cls: type, full_name: str) -> None:
    """Wrap ``cls.__init__`` so a call with arguments it refuses raises a
    ``TypeError`` naming ``full_name``. Idempotent."""
    init = cls.__dict__.get('__init__')
    if init is None or getattr(init, '_mmretina_checks_arguments', False):
        # no own __init__: the inherited one reports for its class
        return

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except TypeError as err:
            # Only arguments the signatures refuse are a config mistake;
            # any other TypeError comes from inside and is re-raised as is.
            problem = _argument_problem(cls, init, self, args, kwargs)
            if problem is None:
                raise
            names, _ = _accepted_arguments(cls)
            raise TypeError(f'{full_name}: {problem}. {full_name} takes: '
                            f"{', '.join(names)}.") from err

    __init__._mmretina_checks_arguments = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


def _accepted_arguments(cls: type) -> Tuple[List[str], bool]:
    """Keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the
    MRO (``mmretina.CocoDataset(**kwargs)`` -> mmdet's -> mmengine's).
    Returns (names, open_ended): open_ended when the chain ends in a
    ``**kwargs`` we cannot see through."""
    names: List[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        if klass in _OPAQUE_BASES:
            # object / nn.Module take no keyword arguments of their own
            return names, False
        params = inspect.signature(inspect.unwrap(init)).parameters.values()
        names += [
            p.name for p in params
            if p.name != 'self' and p.name not in names
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names, False
    return names, True


def _argument_problem(cls: type, init: Callable, self: Any, args: tuple,
                      kwargs: dict) -> Optional[str]:
    """What is wrong with the arguments of ``cls(*args, **kwargs)``, or None
    when the signatures accept them."""
    names, open_ended = _accepted_arguments(cls)
    unknown = [k for k in kwargs if k not in names]
    if unknown and not open_ended:
        parts = []
        for k in unknown:
            close = difflib.get_close_matches(k, names, n=1, cutoff=0.6)
            parts.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)"
                                     if close else ''))
        return ('unexpected argument' + ('s ' if len(parts) > 1 else ' ') +
                ', '.join(parts))
    try:
        inspect.signature(init).bind(self, *args, **kwargs)
    except TypeError as err:
        return str(err)  # e.g. "missing a required argument: 'x'"
    return None


def _opaque_bases() -> tuple:
    bases = [object]
    try:
        import torch
        bases.append(torch.nn.Module)
    except ImportError:  # pragma: no cover
        pass
    return tuple(bases)


_OPAQUE_BASES = _opaque_bases()
