"""Registries of task families and algorithms.

Built-in families and algorithms register themselves on import (``@register_family``,
``@register_algorithm``). A user's algorithm plugs in three ways, none of which edits this package:
the decorator in their own module, ``--algos my_module:MyAgent`` on the command line, or an entry
point in the ``rl2bench.algorithms`` group of their package.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from rl2bench.errors import UserError

if TYPE_CHECKING:
    from rl2bench.agent import Agent
    from rl2bench.task import TaskFamily

_FAMILIES: dict[str, TaskFamily[Any]] = {}
# family -> name -> class: the same name (``random``, ``greedy``) may mean different classes per family.
_ALGORITHMS: dict[str, dict[str, type[Agent]]] = {}
_COMMANDS: dict[str, Command] = {}
_loaded = False
_BROKEN_PLUGINS: dict[str, str] = {}  # entry point name -> why it failed to load

F = TypeVar("F", bound="type[TaskFamily[Any]]")
A = TypeVar("A", bound="type[Agent]")


@dataclass(frozen=True)
class Command:
    """A subcommand that a floor above the core adds to ``python -m rl2bench`` (the RL^2 package adds
    ``train`` and ``zoo``): the core's command line knows it only through this registry."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def register_command(command: Command) -> Command:
    _COMMANDS[command.name] = command
    return command


def commands() -> dict[str, Command]:
    """The registered subcommands, in registration order (loading the built-in floors first)."""
    _load_builtins()
    return dict(_COMMANDS)


def register_family(cls: F) -> F:
    _FAMILIES[cls.name] = cls()
    return cls


def register_algorithm(cls: A) -> A:
    """Class decorator: make ``cls`` available as ``--algos <cls.name>`` for each of ``cls.families``."""
    label = f"{cls.__module__}:{cls.__qualname__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.strip() or "," in name:
        raise UserError(f"{label} needs a class attribute `name` (the name for --algos, no commas)")
    families = getattr(cls, "families", None)
    if isinstance(families, str) or not isinstance(families, tuple | list) or not families:
        raise UserError(f"{label} needs a class attribute `families`, a tuple of task names such as ('mab',)")
    from rl2bench.sealed import is_builtin

    if getattr(cls, "privileged", False) and not is_builtin(cls):
        raise UserError(f"{label} declares `privileged = True`, which only the built-in references (oracles) may: "
                        f"a submitted algorithm sees only what the agent interface hands it")
    for family in cls.families:
        by_name = _ALGORITHMS.setdefault(family, {})
        existing = by_name.get(cls.name)
        same_class = existing is not None and (existing.__module__, existing.__qualname__) == (
            cls.__module__, cls.__qualname__)  # the same class imported again (a reload), not another one
        if existing is not None and existing is not cls and not same_class:
            raise UserError(f"algorithm {cls.name!r} for {family!r} is already registered by "
                            f"{existing.__module__}; give yours another name")
        by_name[cls.name] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("rl2bench.tasks")
    importlib.import_module("rl2bench.algorithms")
    for ep in entry_points(group="rl2bench.algorithms"):
        try:
            cls = ep.load()
            register_algorithm(cls)
        except Exception as exc:  # a broken third-party plugin must not break the harness
            _BROKEN_PLUGINS[ep.name] = f"{type(exc).__name__}: {exc}"
            _warn(f"could not load algorithm entry point {ep.name!r} ({ep.value}): {_BROKEN_PLUGINS[ep.name]}")
            continue
        if getattr(cls, "name", None) != ep.name:
            _warn(f"entry point {ep.name!r} ({ep.value}) registers its class under its `name`, {cls.name!r}; "
                  f"use --algos {cls.name}")


def _warn(message: str) -> None:
    """A plugin problem, said once: on stderr, by the main process (not again by every worker)."""
    import multiprocessing

    if multiprocessing.current_process().name == "MainProcess":
        print(f"rl2bench: warning: {message}", file=sys.stderr)


def families() -> dict[str, TaskFamily[Any]]:
    _load_builtins()
    return dict(_FAMILIES)


def get_family(name: str) -> TaskFamily[Any]:
    fams = families()
    if name not in fams:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(fams))}")
    return fams[name]


def algorithms(family: str) -> dict[str, type[Agent]]:
    """The algorithms registered for ``family``, by name, in registration order."""
    _load_builtins()
    return dict(_ALGORITHMS.get(family, {}))


def load_algorithm_path(path: str) -> type[Agent]:
    """Import ``module:Class`` (the module must be importable, e.g. on PYTHONPATH or the cwd)."""
    from rl2bench.agent import Agent

    module_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:  # the `rl2bench` script, unlike `python -m`,
        sys.path.insert(0, os.getcwd())  # does not see the current folder; workers inherit sys.path
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import algorithm module {module_name!r}: {exc}") from None
    except UserError:
        raise
    except Exception as exc:  # the user's module failed while importing: say where, not a traceback
        raise UserError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise UserError(f"module {module_name!r} ({module.__file__}) has no {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise UserError(f"{path!r} is not an rl2bench Agent subclass")
    return register_algorithm(cls)


def resolve_algorithms(spec: str, family: str) -> list[type[Agent]]:
    """Parse ``--algos``: a comma list of registered names, ``module:Class`` paths and ``all`` (every
    registered algorithm of the family), e.g. ``all,my_agents:SoftmaxBandit`` to test a new
    algorithm against every baseline. ``name(key=value, ...)`` plays one fixed setting instead of tuning
    the grid (``fixed_setting``); it takes the place of the same name given by ``all``."""
    available = algorithms(family)
    chosen: list[type[Agent]] = []
    for item in (s.strip() for s in _split_top_level(spec)):
        if not item:
            continue
        item, paren, args = item.partition("(")
        item = item.strip()
        if paren and item == "all":
            raise UserError("`all` takes no setting; give the algorithm by name, e.g. all,ucb1(c=0.2)")
        if item == "all":
            found = [available[n] for n in available if not available[n].exclude_from_all]
        elif ":" in item:
            cls = load_algorithm_path(item)
            if family not in cls.families:
                raise UserError(f"algorithm {cls.name!r} does not support task {family!r}")
            found = [cls]
        elif item in available:
            found = [available[item]]
        elif item in _BROKEN_PLUGINS:
            raise UserError(f"algorithm entry point {item!r} failed to load: {_BROKEN_PLUGINS[item]}")
        else:
            raise UserError(
                f"unknown algorithm {item!r} for task {family!r}; valid: all, {', '.join(available)}, or a class "
                f"of your own as module:Class"
            )
        if paren:
            if not args.rstrip().endswith(")"):
                raise UserError(f"--algos {item}({args}: expected {item}(key=value, ...)")
            found = [fixed_setting(found[0], args.rstrip()[:-1])]
        for cls in found:
            same = next((i for i, c in enumerate(chosen) if c.name == cls.name), None)
            if same is None:
                chosen.append(cls)
            elif paren and _fixed(chosen[same]):
                raise UserError(f"--algos gives {cls.name!r} two fixed settings; give one")
            elif paren:
                chosen[same] = cls  # the fixed setting takes the place of the name from `all`
    if not chosen:
        raise UserError("no algorithm given; use --algos all or a comma list")
    return chosen


def _fixed(cls: type[Agent]) -> bool:
    return getattr(cls, "fixed_setting", None) is not None


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets and quotes: ``ucb1(c=0.2),eps-greedy(eps=0.1)``."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _literal(text: str) -> Any:
    """A setting's value: JSON (0.2, true, "x", [1, 2]) or a Python literal (True, 'x'), else the bare text
    as a string (argmax, runs/model.zip)."""
    import ast
    import json

    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            continue
    return text


def fixed_setting(cls: type[Agent], text: str) -> type[Agent]:
    """``cls`` playing the one setting ``key=value, ...`` (``--algos 'ucb1(c=0.2)'``): a subclass of the same
    name whose grid is that setting alone, so nothing is tuned and run.json records it as the chosen setting.
    Keys the class's grid holds constant (rl2's policy file) are kept unless given. A key the constructor
    does not take, or a value of the wrong kind for its default, is one line naming the valid keys."""
    import inspect

    params = list(inspect.signature(cls.__init__).parameters.values())[4:]  # after self, spec, batch_size, rng
    named = {p.name: p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params)
    valid = f"valid keys: {', '.join(named) or 'none'}"
    setting: dict[str, Any] = {}
    for pair in (p.strip() for p in _split_top_level(text)):
        if not pair:
            continue
        key, eq, raw = (s.strip() for s in pair.partition("="))
        if not eq or not key.isidentifier():
            raise UserError(f"{cls.name}({text}): expected key=value, got {pair!r}; {valid}")
        if key not in named and not open_ended:
            raise UserError(f"{cls.name}({text}): unknown key {key!r}; {valid}")
        value = _literal(raw)
        default = named[key].default if key in named else None
        kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(type(default))
        if kinds is not None and (not isinstance(value, kinds) or isinstance(value, bool) is not (bool in kinds)):
            raise UserError(f"{cls.name}({text}): {key}={raw} is not a {type(default).__name__} like its default "
                            f"{default!r}; {valid}")
        setting[key] = float(value) if type(default) is float else value

    def grid(_cls: type[Agent], cell: Any, spec: Any) -> list[dict[str, Any]]:
        settings = cls.grid(cell, spec)
        constant = {k: v for k, v in settings[0].items() if all(s.get(k, v) == v and k in s for s in settings)}
        return [{**constant, **setting}]

    namespace = {"grid": classmethod(grid), "fixed_setting": setting, "__module__": cls.__module__,
                 "__qualname__": f"{cls.__qualname__}({text})", "__doc__": cls.__doc__}
    return type(cls.__name__, (cls,), namespace)
