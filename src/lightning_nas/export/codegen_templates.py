"""Text pieces of a generated package: safe literals, call layout, metadata, README, requirements, scripts.

Every value that comes from data (class names, decision labels and values, the dataset
name) reaches generated code through :func:`literal` only, i.e. as a ``repr`` inside a
literal; identifiers are validated by :func:`check_identifier`. The scripts
(``train.py``, ``inference.py``, ``deploy.py``) are static files copied from
``templates/*.py.tmpl``: they read everything they need from ``model.py``.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_nas.arch import normalise_value

__all__ = [
    "BASES",
    "DATASETS",
    "MODEL_FOOTER",
    "SCRIPTS",
    "ClassSpec",
    "NotLiteralError",
    "PackageInfo",
    "call",
    "check_identifier",
    "literal",
    "metadata_source",
    "readme",
    "render_class",
    "requirements",
    "tensor_expr",
    "write_scripts",
]

DATASETS = ("digits", "fashion_mnist", "cifar10", "image_folder")
SCRIPTS = ("train.py", "inference.py", "deploy.py")
TEMPLATES = Path(__file__).with_name("templates")
LINE = 100  # width the generated code aims for
_PREFIX_ROOM = 20  # room left on a one-line call for what precedes and follows it ("name=", ",")
BASES = {nn.Module: "", nn.Sequential: "*layers", nn.ModuleList: "layers"}  # base -> super().__init__ args
_SIMPLE_TYPES = frozenset({"bool", "int", "float", "str", "tuple", "list", "dict"})
# What each script imports, split so that a user who only deploys installs torch and no training stack.
REQUIREMENT_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "requirements.txt": ("model.py and inference.py (Pillow decodes image files)", ("torch", "pillow")),
    "requirements-deploy.txt": ("deploy.py: the ExecuTorch .pte", ("executorch",)),
    "requirements-train.txt": ("train.py", ("lightning", "torchvision", "scikit-learn")),
}


MODEL_FOOTER = '''def example_input(batch_size: int = 1) -> torch.Tensor:
    """A random batch of the input shape the network expects."""
    return torch.randn(batch_size, *INPUT_SHAPE)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) with values in [0, 1] as network inputs: channels, size, MEAN/STD."""
    channels, height, width = INPUT_SHAPE
    if images.shape[1] != channels and channels == 1:
        images = images.mean(dim=1, keepdim=True)
    elif images.shape[1] == 1:
        images = images.expand(-1, channels, -1, -1)
    elif images.shape[1] != channels:
        raise ValueError(f"cannot turn {images.shape[1]}-channel images into {channels} channels")
    if tuple(images.shape[-2:]) != (height, width):
        resize = torch.nn.functional.interpolate
        images = resize(images, size=(height, width), mode="bilinear", antialias=True)
    mean = torch.tensor(MEAN, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(STD, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean) / std
'''


class NotLiteralError(TypeError):
    """A value that cannot be written as a Python literal."""


def check_identifier(kind: str, name: object) -> str:
    """``name`` if it is a valid, non-keyword Python identifier, else ``ValueError`` naming it."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{kind} must be a valid Python identifier, got {name!r}")
    return name


_WRAP = 72  # longest run of literal items kept on one line


def _wrap_items(items: list[str]) -> str:
    """Items joined by ", "; a long sequence continues on new lines (inside its brackets) every ~72 chars."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + len(item) + 2 <= _WRAP:
            lines[-1] += ", " + item
        else:
            lines.append(item)
    return (",\n        ").join(lines) if len(lines) > 1 else "".join(lines)


def literal(value: Any) -> str:
    """Python source for ``value`` (None, bool, int, float, str, bytes, dtype, tuple/list/dict of them)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        number = float(value)
        return repr(number) if math.isfinite(number) else f"float({str(number)!r})"
    if isinstance(value, str):
        return repr(str(value))
    if isinstance(value, bytes):
        return repr(bytes(value))
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, tuple | list):
        items = _wrap_items([literal(v) for v in value])
        if isinstance(value, list):
            return f"[{items}]"
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise NotLiteralError(f"{type(value).__name__} value {value!r:.60} is not a literal")


def call(
    func: str, args: Sequence[str], level: int, open_: str = "(", close: str = ")", pack: bool = False
) -> str:
    """``func(args)`` on one line when short, else one argument per line indented for ``level``.

    With ``pack`` (single-line arguments only), the following lines are filled with as many
    arguments as fit.
    """
    one_line = f"{func}{open_}{', '.join(args)}{close}"
    single = all("\n" not in a for a in args)
    if single and len(one_line) + 4 * level + _PREFIX_ROOM <= LINE:
        return one_line
    inner = "    " * (level + 1)
    lines: list[str] = []
    for arg in args:
        if pack and single and lines and len(inner) + len(lines[-1]) + len(arg) + 2 <= LINE:
            lines[-1] += f" {arg},"
        else:
            lines.append(f"{arg},")
    body = "".join(f"{inner}{line}\n" for line in lines)
    return f"{func}{open_}\n{body}{'    ' * level}{close}"


def tensor_expr(tensor: torch.Tensor, max_literal: int, level: int) -> str:
    """Source building a tensor of ``tensor``'s shape and dtype: its values when small, else zeros."""
    dtype = literal(tensor.dtype)
    if tensor.numel() == 0 or tensor.numel() > max_literal:
        shape = ", ".join(str(s) for s in tensor.shape)
        return f"torch.zeros(({shape}{',' if tensor.dim() == 1 else ''}), dtype={dtype})"
    values = tensor.detach().cpu().tolist()
    if tensor.dim() == 0:
        return f"torch.tensor({literal(values)}, dtype={dtype})"
    return call("torch.tensor", [literal(v) for v in values], level, "([", f"], dtype={dtype})", pack=True)


@dataclass
class ClassSpec:
    """A generated class: its name, origin, torch base, fields (name -> kind) and copied body.

    ``types`` holds the type names each field took over all instances (for annotations).
    """

    name: str
    origin: str
    base: type[nn.Module]
    kinds: dict[str, str]
    body: list[str]
    types: dict[str, set[str]] = field(default_factory=dict)

    def annotation(self, name: str) -> str:
        """The ``__init__`` annotation of field ``name``."""
        kind, types = self.kinds[name], self.types.get(name, set())
        if kind == "module":
            return "nn.Module | None" if "NoneType" in types else "nn.Module"
        if kind != "attr":
            return "torch.Tensor"
        if types == {"NoneType"}:
            return "None"
        return next(iter(types)) if len(types) == 1 and types <= _SIMPLE_TYPES else "Any"


def render_class(spec: ClassSpec) -> str:
    """A generated class: ``__init__`` storing its fields, then the body copied from the original."""
    params = ["self", *(["*layers: nn.Module"] if BASES[spec.base] else [])]
    params += [f"{n}: {spec.annotation(n)}" for n in spec.kinds]
    lines = [f"class {spec.name}(nn.{spec.base.__name__}):",
             f'    """Plain-PyTorch copy of ``{spec.origin}``."""', "",
             call("    def __init__", params, 1) + " -> None:",
             f"        super().__init__({BASES[spec.base]})"]
    for name, kind in spec.kinds.items():
        lines.append("        " + {
            "param": f"self.{name} = nn.Parameter({name})",
            "buffer": f"self.register_buffer({name!r}, {name})",
            "nbuffer": f"self.register_buffer({name!r}, {name}, persistent=False)",
        }.get(kind, f"self.{name} = {name}"))
    return "\n".join(lines) + "".join(f"\n\n{chunk}" for chunk in spec.body)


class PackageInfo:
    """Validated metadata of a generated package (everything but the network)."""

    def __init__(self, model_name: str, arch: Mapping[str, Any], input_shape: Sequence[int], num_classes: int,
                 data: str, class_names: Sequence[str] | None, mean: Sequence[float] | None,
                 std: Sequence[float] | None) -> None:
        self.model_name = check_identifier("model_name", model_name)
        if data not in DATASETS:
            raise ValueError(f"data must be one of {list(DATASETS)}, got {data!r}")
        shape = tuple(input_shape)
        if len(shape) != 3 or not all(type(s) is int and s > 0 for s in shape):
            raise ValueError(f"input_shape must be 3 positive ints (C, H, W), got {input_shape!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
        if len(names) != num_classes or not all(isinstance(n, str) for n in names):
            raise ValueError(f"class_names must be {num_classes} strings, got {class_names!r}")
        self.arch = {str(k): normalise_value(v) for k, v in arch.items()}  # ValueError on a bad value
        self.data, self.input_shape, self.num_classes, self.class_names = data, shape, num_classes, names
        self.mean = _channel_stats("mean", mean, shape[0], 0.0)
        self.std = _channel_stats("std", std, shape[0], 1.0)
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {std!r}")


def _channel_stats(
    name: str, values: Sequence[float] | None, channels: int, default: float
) -> tuple[float, ...]:
    stats = (default,) * channels if values is None else tuple(float(v) for v in values)
    if len(stats) != channels or not all(math.isfinite(v) for v in stats):
        raise ValueError(f"{name} must be {channels} finite numbers (one per channel), got {values!r}")
    return stats


def metadata_source(info: PackageInfo) -> str:
    """The constants block of ``model.py`` (every value a literal)."""
    arch = call("", [f"{literal(k)}: {literal(v)}" for k, v in info.arch.items()], 0, "{", "}")
    names = call("", [literal(n) for n in info.class_names], 0, "[", "]")
    return "\n".join([
        f"MODEL_NAME = {literal(info.model_name)}",
        f"DATA = {literal(info.data)}  # dataset the weights were trained on",
        f"INPUT_SHAPE = {literal(info.input_shape)}  # (channels, height, width)",
        f"NUM_CLASSES = {info.num_classes}",
        f"CLASS_NAMES = {names}",
        f"MEAN = {literal(info.mean)}  # per-channel input normalisation",
        f"STD = {literal(info.std)}",
        f"ARCH = {arch}  # the searched architecture (decision label -> choice)",
    ])


def requirements() -> dict[str, str]:
    """File name -> text of the pinned requirements of each script group, as installed here.

    ``requirements.txt`` holds inference's needs alone; the deploy and train files include it.
    """
    files = {}
    for index, (name, (purpose, packages)) in enumerate(REQUIREMENT_FILES.items()):
        lines = [f"# {purpose}"] + ([] if index == 0 else ["-r requirements.txt"])
        lines += [_pinned(package) for package in packages]
        files[name] = "\n".join(lines) + "\n"
    return files


def _pinned(package: str) -> str:
    try:
        return f"{package}=={metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return package


def readme(info: PackageInfo, has_weights: bool, trained: bool = True) -> str:
    """README.md: what the package is, the architecture, and how to train, infer and deploy."""
    arch_json = json.dumps(info.arch, indent=2, ensure_ascii=True)
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", arch_json)), default=0))
    if has_weights and not trained:
        weights = ("**UNTRAINED**: `weights.pt` holds a random initialisation, not trained weights, so "
                   "`inference.py` answers at chance. Train first (`python train.py`).")
    elif has_weights:
        weights = "`weights.pt` holds the trained weights."
    else:
        weights = "No weights are included: train first (`python train.py`)."
    shape = " x ".join(str(s) for s in info.input_shape)
    return f"""# {info.model_name}

A network found by neural architecture search with `lightning_nas`, written as plain PyTorch.
`model.py` and `inference.py` need only `torch` (and Pillow for image files): `requirements.txt`.
`deploy.py` adds ExecuTorch (`requirements-deploy.txt`), `train.py` adds Lightning, torchvision and
scikit-learn (`requirements-train.txt`).
Input: {shape} images (channels x height x width); output: {info.num_classes} class logits.
{weights}

## Architecture (`arch.json`)

{fence}json
{arch_json}
{fence}

## Usage

```bash
pip install -r requirements.txt          # inference only; add -deploy or -train for the other scripts
pip install -r requirements-train.txt    # to train
python train.py --data {info.data} --epochs 20   # writes weights.pt
python inference.py image.png                      # top classes of an image (or a saved tensor .pt)
pip install -r requirements-deploy.txt   # to deploy
python deploy.py --output model.pte --check        # ExecuTorch program (XNNPACK), checked against eager
```

```python
import torch
from model import build_model

model = build_model()
model.load_state_dict(torch.load("weights.pt", weights_only=True))
```
"""


def write_scripts(out_dir: Path) -> None:
    """Copy the static scripts (``templates/*.py.tmpl``) into ``out_dir``."""
    for script in SCRIPTS:
        source = (TEMPLATES / f"{Path(script).stem}.py.tmpl").read_text(encoding="utf-8")
        (out_dir / script).write_text(source, encoding="utf-8")
