"""Writes a module tree as plain-PyTorch construction code: the core of :mod:`lightning_nas.export.codegen`.

torch.nn layers become literal constructor calls; other modules become generated classes whose
``forward`` is copied from their source (see the :mod:`~lightning_nas.export.codegen` docstring).
"""

from __future__ import annotations

import ast
import builtins
import collections
import inspect
import keyword
import re
import symtable
import sys
import textwrap
import types
import typing
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from lightning_nas.export.codegen_templates import BASES, ClassSpec, NotLiteralError, call, literal, tensor_expr

__all__ = ["RESERVED", "ModuleWriter", "UnsupportedModuleError"]

_MODULE_STATE = frozenset(vars(nn.Module()))
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_PAIRS = frozenset({"kernel_size", "stride", "padding", "dilation"})
_IDENTITY = frozenset({"lightning_nas.nn.choices.resolve", "lightning_nas.nn.choices.max_of"})
RESERVED = ("MODEL_NAME", "DATA", "INPUT_SHAPE", "NUM_CLASSES", "CLASS_NAMES", "MEAN", "STD", "ARCH",
             "build_model", "example_input", "preprocess")
_IDENTITY_SOURCE = '''def {name}(value: Any) -> Any:
    """The value itself: this network holds no choices."""
    return value
'''
_TAKEN = frozenset({"self", "nn", "torch", "layers"})  # names a generated __init__ uses itself
_MAX_LITERAL = 16  # parameters and buffers with at most this many values are written out
_MAX_CONSTANT = 4096  # largest non-persistent buffer (its values are not in the state_dict)


class UnsupportedModuleError(TypeError):
    """A module of the network cannot be written as standalone code."""


@dataclass(frozen=True)
class _Const:
    text: str


@dataclass
class _Ctx:
    """Where the writer is: for error messages."""

    module: nn.Module
    path: str

    def fail(self, reason: str) -> UnsupportedModuleError:
        cls = type(self.module)
        where = f"at {self.path!r}" if self.path else "(the root module)"
        name = f"{cls.__module__}.{cls.__qualname__}"
        return UnsupportedModuleError(f"cannot write module {name} {where}: {reason}")


@dataclass
class _Field:
    name: str
    kind: str  # layer (numbered child of a Sequential/ModuleList subclass), module, param, (n)buffer, attr
    value: Any


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _allowed(module_name: str) -> bool:
    top = module_name.split(".")[0]
    return top == "torch" or top in sys.stdlib_module_names


def _const(obj: object) -> _Const | None:
    if callable(obj) or isinstance(obj, ModuleType):
        return None
    try:
        return _Const(literal(obj))
    except NotLiteralError:
        return None


def _same_default(value: Any, default: Any) -> bool:
    plain = (type(None), bool, int, float, str, tuple)
    return isinstance(value, plain) and type(value) is type(default) and value == default


def _global_names(source: str, ctx: _Ctx) -> list[str]:
    """Names that ``source`` (one function definition) reads from its module's globals.

    Imports inside the function must be of torch or the standard library too.
    """
    try:
        table = symtable.symtable(source, "<codegen>", "exec")
    except SyntaxError as error:
        raise ctx.fail(f"its source could not be parsed ({error})") from error
    for node in ast.walk(ast.parse(source)):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom):
            modules = ["." * node.level + (node.module or "")]
        for module in modules:
            if module.startswith(".") or not _allowed(module):
                raise ctx.fail(f"its code imports {module!r}; only torch and the standard library are allowed")
    names = [s.get_name() for s in table.get_symbols() if s.is_referenced() and not s.is_assigned()]
    todo = list(table.get_children())
    while todo:
        scope = todo.pop()
        names += [s.get_name() for s in scope.get_symbols() if s.is_global() and s.is_referenced()]
        todo += scope.get_children()
    return list(dict.fromkeys(names))


def _self_references(source: str) -> list[str]:
    """Attribute names read through ``self`` or ``cls`` in ``source``."""
    nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Attribute)]
    return [n.attr for n in nodes if isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")]


def _function_source(func: Any, ctx: _Ctx) -> str:
    try:
        return textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError) as error:
        raise ctx.fail(f"the source of {func.__qualname__} is not available ({error})") from error


def _fields(module: nn.Module, ctx: _Ctx) -> list[_Field]:
    """Children, own parameters and buffers, and plain attributes of a custom module."""
    layered = isinstance(module, nn.Sequential | nn.ModuleList)
    fields = [_Field(n, "layer" if layered and n.isdigit() else "module", c)
              for n, c in module._modules.items()]
    fields += [_Field(n, "attr" if p is None else "param", p) for n, p in module._parameters.items()]
    transient = module._non_persistent_buffers_set
    fields += [_Field(n, "attr" if b is None else "nbuffer" if n in transient else "buffer", b)
               for n, b in module._buffers.items()]
    fields += [_Field(n, "attr", v) for n, v in vars(module).items() if n not in _MODULE_STATE]
    layers = [f.name for f in fields if f.kind == "layer"]
    if layers != [str(i) for i in range(len(layers))]:
        raise ctx.fail(f"its numbered children {layers} are not 0..{len(layers) - 1}")
    for f in fields:
        if f.kind != "layer" and (not f.name.isidentifier() or keyword.iskeyword(f.name) or f.name in _TAKEN):
            raise ctx.fail(f"its attribute {f.name!r} is not a valid argument name")
    return fields


def _layer_arguments(module: nn.Module, ctx: _Ctx) -> tuple[list[Any], dict[str, Any]]:
    """Constructor arguments of a torch.nn layer, read from its attributes (defaults left out)."""
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    collapse = isinstance(module, nn.modules.conv._ConvNd)
    for name, param in inspect.signature(type(module)).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in ("device", "dtype"):
            continue
        required = param.default is param.empty
        if not hasattr(module, name):
            if required:
                raise ctx.fail(f"its constructor argument {name!r} is not an attribute")
            continue
        value = getattr(module, name)
        if isinstance(param.default, bool) and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None
        if collapse and name in _PAIRS and isinstance(value, tuple) and len(set(value)) == 1:
            value = value[0]
        if not required and _same_default(value, param.default):
            continue
        if required and not keywords and name != "kernel_size":
            positional.append(value)
        else:
            keywords[name] = value
    return positional, keywords


def _check_rebuild(module: nn.Module, args: list[Any], kwargs: dict[str, Any], ctx: _Ctx) -> None:
    """Rebuild the layer on the meta device; it must print and hold state like ``module``."""
    try:
        with torch.device("meta"):
            rebuilt = type(module)(*args, **kwargs)
    except Exception as error:
        raise ctx.fail(f"rebuilding it from its attributes failed ({error})") from error

    def shapes(m: nn.Module) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}

    if rebuilt.extra_repr() != module.extra_repr() or shapes(rebuilt) != shapes(module):
        raise ctx.fail(f"rebuilt from its attributes it differs: {rebuilt!r} vs {module!r}")


class ModuleWriter:
    """Collects imports, helpers and classes while writing the construction of a module tree."""

    def __init__(self, model_name: str) -> None:
        if model_name in (*RESERVED, "torch", "nn"):
            raise ValueError(f"model_name {model_name!r} clashes with a name that model.py defines")
        self.model_name = model_name
        self.bound: dict[str, object] = {name: object() for name in (*RESERVED, model_name)}
        self.imports: dict[str, str] = {}
        self.helpers: list[str] = []
        self.classes: dict[type, ClassSpec] = {}
        self.root = _Ctx(nn.Module(), "")
        self.bind("torch", torch, self.root)
        self.bind("nn", nn, self.root)

    def bind(self, name: str, obj: object, ctx: _Ctx) -> None:
        """Make the global ``name`` of copied code mean ``obj`` in the generated file."""
        const = _const(obj)
        if name in self.bound:
            current = self.bound[name]
            if current is obj or (const is not None and current == const):
                return
            if name == self.model_name:
                raise ValueError(f"model_name {name!r} clashes with a global name of the network's code")
            raise ctx.fail(f"the global name {name!r} would mean two different things in model.py")
        self.bound[name] = obj if const is None else const
        qualified = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        if const is not None:
            self.helpers.append(f"{name} = {const.text}")
        elif isinstance(obj, ModuleType):
            self.imports[name] = self._import_module(name, obj, ctx)
        elif qualified in _IDENTITY:
            self.copy_function(_IDENTITY_SOURCE.format(name=name), {"Any": Any}, ctx)
        elif _is_type_alias(obj):  # e.g. ``NodeWeights = tuple[torch.Tensor, torch.Tensor | None]``
            text = repr(obj)
            self.helpers.append(f"{name} = {text}")
            self.resolve(text, {"torch": torch, "typing": typing, "collections": collections}, ctx)
        elif inspect.isfunction(obj) and not _allowed(obj.__module__):
            if obj.__name__ != name or obj.__closure__:
                raise ctx.fail(f"its code uses {name!r}, a renamed import or closure that cannot be copied")
            self.copy_function(_function_source(obj, ctx), obj.__globals__, ctx)
        else:
            self.imports[name] = self._import_object(name, obj, ctx)

    @staticmethod
    def _import_module(name: str, module: ModuleType, ctx: _Ctx) -> str:
        full = module.__name__
        if not _allowed(full):
            raise ctx.fail(f"its code uses module {full!r}; only torch and the standard library are allowed")
        parent, _, last = full.rpartition(".")
        if full == name:
            return f"import {full}"
        return f"from {parent} import {name}" if parent and last == name else f"import {full} as {name}"

    @staticmethod
    def _import_object(name: str, obj: object, ctx: _Ctx) -> str:
        origin, attr = getattr(obj, "__module__", None), getattr(obj, "__name__", None)
        if not (isinstance(origin, str) and isinstance(attr, str) and _allowed(origin)
                and getattr(sys.modules.get(origin), attr, None) is obj):
            raise ctx.fail(f"its code uses {name!r} ({type(obj).__name__} from {origin}), which is not "
                           "importable from torch or the standard library, a literal or a plain function")
        return f"from {origin} import {attr}" + ("" if attr == name else f" as {name}")

    def copy_function(self, source: str, namespace: Mapping[str, Any], ctx: _Ctx) -> None:
        self.helpers.append(source)
        self.resolve(source, namespace, ctx)

    def resolve(self, source: str, namespace: Mapping[str, Any], ctx: _Ctx) -> None:
        """Bind every global name that ``source`` reads."""
        for name in _global_names(source, ctx):
            if name in namespace:
                self.bind(name, namespace[name], ctx)
            elif not hasattr(builtins, name):
                raise ctx.fail(f"its code uses {name!r}, which is not defined where the code is")

    def expr(self, module: nn.Module | None, path: str, level: int, callee: str | None = None) -> str:
        """Source constructing ``module`` (continuation lines indented for ``level``)."""
        if module is None:
            return "None"
        ctx = _Ctx(module, path)
        if callable(getattr(module, "freeze_module", None)):
            raise ctx.fail("it is a search-space choice; pass a frozen network (space.build or freeze)")
        if type(module) in _CONTAINERS:
            return self._container(module, path, level, callee)
        if type(module).__module__.startswith("torch."):
            return self._layer(module, ctx, level, callee)
        return self._custom(module, ctx, level, callee)

    def _container(self, module: nn.Module, path: str, level: int, callee: str | None) -> str:
        name = callee or f"nn.{type(module).__name__}"
        items = list(module._modules.items())
        children = [self.expr(c, _join(path, n), level + 1) for n, c in items]
        if isinstance(module, nn.ModuleList):
            return call(name, children, level, "([", "])")
        pairs = [f"{literal(n)}: {child}" for (n, _), child in zip(items, children, strict=True)]
        if isinstance(module, nn.ModuleDict):
            return call(name, pairs, level, "({", "})")
        if [n for n, _ in items] == [str(i) for i in range(len(items))]:
            return call(name, children, level)
        self.bind("OrderedDict", OrderedDict, _Ctx(module, path))
        return call(f"{name}(OrderedDict", pairs, level, "({", "}))")

    def _layer(self, module: nn.Module, ctx: _Ctx, level: int, callee: str | None) -> str:
        cls = type(module)
        if getattr(nn, cls.__name__, None) is not cls:
            raise ctx.fail("torch modules outside the torch.nn namespace are not supported")
        args, kwargs = _layer_arguments(module, ctx)
        _check_rebuild(module, args, kwargs, ctx)
        try:
            rendered = [literal(a) for a in args] + [f"{k}={literal(v)}" for k, v in kwargs.items()]
        except NotLiteralError as error:
            raise ctx.fail(f"a constructor argument is not a literal ({error})") from error
        return call(callee or f"nn.{cls.__name__}", rendered, level, pack=True)

    def _custom(self, module: nn.Module, ctx: _Ctx, level: int, callee: str | None) -> str:
        fields = _fields(module, ctx)
        spec = self.classes.get(type(module)) or self._new_class(module, fields, ctx)
        kinds = {f.name: f.kind for f in fields if f.kind != "layer"}
        if kinds != spec.kinds:
            raise ctx.fail(f"its attributes {sorted(kinds)} differ from another's: {sorted(spec.kinds)}")
        for f in fields:
            if f.kind in ("attr", "module"):
                spec.types.setdefault(f.name, set()).add(type(f.value).__name__)
        args = [self._field_expr(f, ctx, level + 1) for f in fields]
        return call(callee or spec.name, args, level)

    def _field_expr(self, f: _Field, ctx: _Ctx, level: int) -> str:
        if f.kind == "layer":
            return self.expr(f.value, _join(ctx.path, f.name), level)
        if f.kind == "module":
            text = self.expr(f.value, _join(ctx.path, f.name), level)
        elif f.kind in ("param", "buffer"):
            text = tensor_expr(f.value, _MAX_LITERAL, level)
        elif f.kind == "nbuffer":
            if f.value.numel() > _MAX_CONSTANT:
                raise ctx.fail(f"its non-persistent buffer {f.name!r} is too large to write out")
            text = tensor_expr(f.value, _MAX_CONSTANT, level)
        else:
            try:
                text = literal(f.value)
            except NotLiteralError as error:
                raise ctx.fail(f"its attribute {f.name!r} is not a literal ({error})") from error
        return f"{f.name}={text}"

    def _new_class(self, module: nn.Module, fields: list[_Field], ctx: _Ctx) -> ClassSpec:
        cls = type(module)
        base = next(c for c in cls.__mro__ if c.__module__.startswith("torch."))
        if base not in BASES:
            raise ctx.fail(f"it derives from torch.nn.{base.__name__}, not Module, Sequential or ModuleList")
        name = cls.__name__ if cls.__name__.isidentifier() else "Block"
        stem, index = name, 1
        while name in self.bound:
            index += 1
            name = f"{stem}{index}"
        self.bound[name] = cls
        origin = f"{cls.__module__}.{cls.__qualname__}"
        kinds = {f.name: f.kind for f in fields if f.kind != "layer"}
        spec = ClassSpec(name, origin if re.fullmatch(r"[\w.<>]+", origin) else name, base, kinds, [])
        self.classes[cls] = spec
        spec.body = self._copy_methods(cls, base, ctx)
        return spec

    def _copy_methods(self, cls: type, base: type, ctx: _Ctx) -> list[str]:
        """``forward`` and what it reaches through ``self``, copied from ``cls`` and its custom bases."""
        owners = cls.__mro__[: cls.__mro__.index(base)]
        todo, seen, body = ["forward"], set(), []
        while todo:
            name = todo.pop(0)
            owner = next((c for c in owners if name in vars(c)), None)
            if name in seen or owner is None:
                continue
            seen.add(name)
            member = vars(owner)[name]
            func = member.__func__ if isinstance(member, staticmethod | classmethod) else member
            func = func.fget if isinstance(func, property) and func.fset is None else func
            if not inspect.isfunction(func):
                const = _const(func)
                if const is None:
                    raise ctx.fail(f"its class attribute {name!r} is neither a literal nor a plain method")
                body.append(f"    {name} = {const.text}")
                continue
            free = set(func.__code__.co_freevars)
            if free - {"__class__"} or (free and owner is not owners[-1]):
                raise ctx.fail(f"its method {name!r} is a closure or calls super() across custom classes")
            source = _function_source(func, ctx)
            self.resolve(source, func.__globals__, ctx)
            todo += _self_references(source)
            body.append(textwrap.indent(source, "    ").rstrip("\n"))
        return body


def _is_type_alias(obj: object) -> bool:
    """A parametrised generic or a union used as a type alias (``tuple[Tensor, int]``, ``int | None``)."""
    return isinstance(obj, types.GenericAlias | types.UnionType) or (
        type(obj).__module__ == "typing" and hasattr(obj, "__origin__")
    )
