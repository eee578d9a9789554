"""Standalone code generation: generated packages rebuild the network exactly, lint clean and stay safe."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lightning_nas.export.codegen import UnsupportedModuleError, generate_package
from lightning_nas.nn import LayerChoice, SelectInputs
from lightning_nas.spaces import SPACES

BIN = Path(sys.executable).parent
SHAPE = (1, 8, 8)
STDLIB_AND_TORCH = {"torch", *sys.stdlib_module_names}

# Small configurations of the registered spaces (a space missing here is tested with its defaults).
SMALL: dict[str, dict[str, Any]] = {
    "efficient_convnet": {
        "width_multipliers": [0.5, 1.0],
        "depth_multipliers": [0.5, 1.0],
        "kernel_sizes": [3, 5],
        "expansions": [1, 3],
        "stem_channels": 8,
        "stage_channels": [8, 16],
        "stage_depths": [1, 2],
        "stage_strides": [1, 2],
        "head_channels": 16,
    },
    "macro_convnet": {
        "num_layers": [2, 3],
        "channels": [8, 16],
        "num_reductions": 1,
        "stem_channels": 8,
        "norms": ["batch", "group", "layer"],
    },
}


# ----------------------------------------------------------------------------- helpers


def ruff_check(folder: Path, tmp_path: Path, long_lines: bool = False) -> None:
    """``ruff check`` with pycodestyle and pyflakes rules; lines up to 120 (copied code keeps its own) unless
    ``long_lines`` (strings from data can be any length)."""
    config = tmp_path / f"ruff-{uuid.uuid4().hex}.toml"
    ignore = '["E501"]' if long_lines else "[]"
    config.write_text(f'line-length = 120\n[lint]\nselect = ["E", "F", "W"]\nignore = {ignore}\n')
    result = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "--config", str(config), str(folder)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def import_model(folder: Path) -> Any:
    """The generated ``model.py`` imported under a unique module name."""
    spec = importlib.util.spec_from_file_location(f"generated_{uuid.uuid4().hex}", folder / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def warm(model: nn.Module, shape: tuple[int, ...] = SHAPE) -> nn.Module:
    """Move batch-norm statistics off their initial values, then switch to eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, *shape) * 2 + 1)
    return model.eval()


def assert_reproduces(model: nn.Module, arch: dict[str, Any], out: Path, tmp_path: Path, **kwargs: Any) -> Any:
    """Generate a package for ``model``; its ``model.py`` must rebuild ``model`` exactly. Returns the module."""
    generate_package(model, arch, out, SHAPE, 10, state_dict=model.state_dict(), **kwargs)
    ruff_check(out, tmp_path, long_lines=kwargs.get("class_names") is not None)
    module = import_model(out)
    generated = module.build_model()
    generated.load_state_dict(torch.load(out / "weights.pt", weights_only=True), strict=True)
    assert list(generated.state_dict()) == list(model.state_dict())
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        assert torch.equal(generated.eval()(x), model.eval()(x))
    assert {name.split(".")[0] for name in imported_modules(out / "model.py")} <= STDLIB_AND_TORCH
    for script in out.glob("*.py"):
        assert not any(name.split(".")[0] == "lightning_nas" for name in imported_modules(script)), script
    return module


# ----------------------------------------------------------------------------- test-local modules

SCALE = 0.5  # a module-level constant read by copied code


def _halve(x: torch.Tensor) -> torch.Tensor:
    """A module-level helper that copied code calls."""
    return x * SCALE


class Gate(nn.Module):
    """Own parameter, persistent and non-persistent buffers, a class constant and helper methods."""

    offset = 0.25

    def __init__(self, channels: int, mode: str) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.randn(channels))
        self.register_buffer("shift", torch.randn(channels))
        self.register_buffer("table", torch.arange(channels, dtype=torch.float32), persistent=False)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._gate(x) + self._bias(x.shape[1])

    def _gate(self, x: torch.Tensor) -> torch.Tensor:
        weighted = x * (self.scale + self.shift).view(1, -1, 1, 1)
        return _halve(weighted) if self.mode == "half" else weighted

    def _bias(self, channels: int) -> torch.Tensor:
        return self.table[:channels].view(1, -1, 1, 1) * self.offset

    def unused(self) -> Any:
        return np.zeros(1)  # not reached from forward, so numpy is never needed


class Stage(nn.Sequential):
    """A Sequential subclass that inherits forward."""

    def __init__(self, *layers: nn.Module, tag: str) -> None:
        super().__init__(*layers)
        self.tag = tag


class Cell(nn.Module):
    """Branches in a ModuleList, norms in a ModuleDict, merged by the frozen form of an InputChoice."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        pool = nn.AvgPool2d(3, 1, padding=1, count_include_pad=False)
        conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.branches = nn.ModuleList([conv, nn.Sequential(pool, nn.Hardswish())])
        self.norms = nn.ModuleDict({"group": nn.GroupNorm(2, channels), "layer": nn.LayerNorm([channels, 8, 8])})
        self.select = SelectInputs((0, 2), "sum")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = (branch(x) for branch in self.branches)
        states = [x, self.norms["group"](first), self.norms["layer"](second)]
        return self.select(states)


class Residual(nn.Module):
    """A custom base class: its forward calls a method the subclass defines."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ReluResidual(Residual):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


class Holder(nn.Module):
    """Holds a string attribute and a ModuleDict whose keys come from data."""

    def __init__(self, label: str, key: str) -> None:
        super().__init__()
        self.label = label
        self.heads = nn.ModuleDict({key: nn.Identity()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return next(iter(self.heads.values()))(x)


class Lambda(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class NumpyTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.tanh(x.numpy()))


class LocalImport(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from lightning_nas.nn import resolve

        return resolve(x)


# ----------------------------------------------------------------------------- reproduction


def test_toy_space_packages_rebuild_the_network_exactly(toy_space: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for index in range(3):
        arch = toy_space.sample(rng)
        model = warm(toy_space.build(arch))
        module = assert_reproduces(model, dict(arch), tmp_path / f"pkg{index}", tmp_path)
        assert dict(arch) == module.ARCH
        assert "nn.Conv2d(1, " in (tmp_path / f"pkg{index}" / "model.py").read_text()


@pytest.mark.parametrize("name", SPACES.names())
def test_every_registered_space_packages_rebuild_the_network_exactly(name: str, tmp_path: Path) -> None:
    space = SPACES.get(name)(SHAPE, 10, **SMALL.get(name, {}))
    rng = np.random.default_rng(1)
    for index in range(3):
        arch = space.sample(rng)
        assert_reproduces(warm(space.build(arch)), dict(arch), tmp_path / f"pkg{index}", tmp_path)


def test_custom_modules_are_written_with_their_forward_and_state(tmp_path: Path) -> None:
    model = nn.Sequential(
        Stage(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.GELU(approximate="tanh"), tag="stem"),
        Gate(4, "half"),
        Cell(4),
        ReluResidual(4),
        nn.MaxPool2d(2),
        nn.Dropout(0.1),
        nn.Flatten(),
        nn.Linear(64, 10),
        nn.Sigmoid(),
    )
    module = assert_reproduces(warm(model), {"op": "gate"}, tmp_path / "pkg", tmp_path)
    source = (tmp_path / "pkg" / "model.py").read_text()
    assert "def _halve(" in source and "SCALE = 0.5" in source and "offset = 0.25" in source
    assert "numpy" not in source and "def unused" not in source
    built = module.build_model()
    assert built[0].tag == "stem" and built[1].mode == "half"
    assert torch.equal(built[1].table, torch.arange(4, dtype=torch.float32))  # not in the state_dict


def test_torch_layers_are_written_from_their_attributes(tmp_path: Path) -> None:
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.PReLU(), nn.LeakyReLU(0.2), nn.ReLU6(), nn.Tanh(),
        nn.Softmax(dim=1), nn.LayerNorm(16, eps=1e-3), nn.Unflatten(1, (1, 4, 4)), nn.Upsample(scale_factor=2.0),
        nn.ConvTranspose2d(1, 2, 3, stride=2, padding=1, output_padding=1), nn.ZeroPad2d(1),
        nn.InstanceNorm2d(2, affine=True), nn.AdaptiveMaxPool2d((2, 2)), nn.Hardsigmoid(), nn.Mish(), nn.ELU(),
        nn.Conv2d(2, 4, (1, 3), padding="same", padding_mode="reflect"), nn.Flatten(), nn.Linear(16, 10),
    )
    assert_reproduces(warm(model), {}, tmp_path / "pkg", tmp_path)
    source = (tmp_path / "pkg" / "model.py").read_text()
    assert "nn.LeakyReLU(negative_slope=0.2)" in source and "padding_mode='reflect'" in source


# ----------------------------------------------------------------------------- safety and errors


def test_strings_from_data_stay_data(toy_space: Any, tmp_path: Path) -> None:
    marker = tmp_path / "injected"
    payload = f'x"""\n\'\'\'\nimport os; os.system("touch {marker}")\n#\\n\\'
    key = '"""\'\nimport os #'  # module names cannot contain "."
    sampled = toy_space.sample(np.random.default_rng(0))
    arch = {**sampled, payload: payload, "label\nnewline": "v\"'"}
    model = warm(nn.Sequential(toy_space.build(sampled), Holder(payload, key)))
    names = [payload, "it's \"quoted\"", *map(str, range(8))]
    out = tmp_path / "pkg"
    module = assert_reproduces(model, arch, out, tmp_path, class_names=names)
    assert names == module.CLASS_NAMES and payload == module.ARCH[payload]
    assert module.build_model()[1].label == payload and key in module.build_model()[1].heads
    assert json.loads((out / "arch.json").read_text())[payload] == payload
    assert "os" not in imported_modules(out / "model.py")
    result = subprocess.run([sys.executable, "train.py", "--help"], cwd=out, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "--data" in result.stdout and "--fast-dev-run" in result.stdout
    assert not marker.exists()


@pytest.mark.parametrize("name", ["Bad Name", "class", 'X"""', "1abc", "", "build_model", "torch"])
def test_model_name_must_be_a_free_identifier(toy_space: Any, tmp_path: Path, name: str) -> None:
    arch = toy_space.sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="model_name") as error:
        generate_package(toy_space.build(arch), arch, tmp_path, SHAPE, 10, model_name=name)
    assert repr(name) in str(error.value)
    assert not (tmp_path / "model.py").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": "mnist\nimport os"}, "data"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"std": (0.0,)}, "std"),
        ({"input_shape": (8, 8)}, "input_shape"),
    ],
)
def test_bad_metadata_is_rejected(toy_space: Any, tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    arch = toy_space.sample(np.random.default_rng(0))
    options = {"input_shape": SHAPE, "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_package(toy_space.build(arch), arch, tmp_path, **options)


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (Lambda(torch.tanh), ["Lambda", "'fn'"]),
        (NumpyTanh(), ["NumpyTanh", "numpy"]),
        (LocalImport(), ["LocalImport", "lightning_nas.nn"]),
        (LayerChoice({"a": nn.ReLU, "b": nn.Identity}, label="op"), ["LayerChoice", "frozen"]),
    ],
)
def test_unsupported_modules_raise_an_error_naming_their_type(module: nn.Module, names: list[str],
                                                              tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), module)
    with pytest.raises(UnsupportedModuleError) as error:
        generate_package(model, {}, tmp_path, SHAPE, 10)
    assert all(name in str(error.value) for name in names), str(error.value)
    assert "'1'" in str(error.value)  # the module's path in the network


def test_package_files_describe_the_network(toy_space: Any, tmp_path: Path) -> None:
    arch = toy_space.sample(np.random.default_rng(2))
    model = toy_space.build(arch)
    out = generate_package(model, arch, tmp_path / "pkg", SHAPE, 10, state_dict=model.state_dict(),
                           mean=(0.3,), std=(0.4,), model_name="DigitsNet")
    expected = {"model.py", "train.py", "inference.py", "deploy.py", "requirements.txt", "requirements-deploy.txt",
                "requirements-train.txt", "README.md", "arch.json", "weights.pt"}
    assert {p.name for p in out.iterdir()} == expected
    assert json.loads((out / "arch.json").read_text()) == dict(arch)
    inference = (out / "requirements.txt").read_text().splitlines()
    assert f"torch=={metadata.version('torch')}" in inference
    assert not any(line.startswith(("lightning", "torchvision", "executorch")) for line in inference)
    deploy, train = ((out / f"requirements-{kind}.txt").read_text().splitlines() for kind in ("deploy", "train"))
    assert "-r requirements.txt" in deploy and f"executorch=={metadata.version('executorch')}" in deploy
    assert "-r requirements.txt" in train and f"lightning=={metadata.version('lightning')}" in train
    readme = (out / "README.md").read_text()
    assert "# DigitsNet" in readme and json.dumps(dict(arch), indent=2) in readme
    module = import_model(out)
    assert isinstance(module.build_model(), module.DigitsNet)
    batch = module.preprocess(torch.full((2, 3, 16, 16), 0.3))  # RGB at another size -> gray 8x8, normalised
    assert batch.shape == (2, *SHAPE) and torch.allclose(batch, torch.zeros_like(batch), atol=1e-6)
    generate_package(model, arch, out, SHAPE, 10)  # no weights now: the stale file goes
    assert not (out / "weights.pt").exists()


@pytest.mark.slow
def test_generated_scripts_train_classify_and_deploy(toy_space: Any, tmp_path: Path) -> None:
    arch = toy_space.sample(np.random.default_rng(3))
    out = generate_package(toy_space.build(arch), arch, tmp_path / "pkg", SHAPE, 10, mean=(0.3,), std=(0.4,))

    def run(*args: str) -> str:
        result = subprocess.run([sys.executable, *args], cwd=out, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
        return result.stdout

    run("train.py", "--fast-dev-run", "--accelerator", "cpu")
    assert (out / "weights.pt").exists()
    torch.save(torch.zeros(*SHAPE), out / "zeros.pt")
    assert "zeros.pt[0]: " in run("inference.py", "zeros.pt", "--top-k", "2")
    Image.fromarray(np.full((12, 12), 200, dtype=np.uint8)).save(out / "digit.png")  # gray, resized to 8x8
    assert "digit.png[0]: " in run("inference.py", "digit.png", "--top-k", "2")
    assert "max |pte - eager|" in run("deploy.py", "--output", "model.pte", "--check")
    assert (out / "model.pte").stat().st_size > 0


def test_inference_script_needs_only_torch_and_pillow(toy_space: Any, tmp_path: Path) -> None:
    arch = toy_space.sample(np.random.default_rng(4))
    out = generate_package(toy_space.build(arch), arch, tmp_path / "pkg", SHAPE, 10)
    tree = ast.parse((out / "inference.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {str(node.module).split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - set(sys.stdlib_module_names) == {"torch", "PIL", "model"}
