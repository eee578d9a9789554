"""One-line errors for every command-line entry point: ``lightning_nas: error: <key>: <what> (<fix>)``, exit 2.

:func:`compose_or_fail` composes a Hydra config the way the app will, before the app writes anything,
and condenses Hydra's and OmegaConf's multi-line messages into one line naming the override the user
typed (or, when an experiment's own keys do not fit the group option chosen, that option).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from omegaconf import DictConfig, OmegaConf

from lightning_nas.config import ConfigError, register_configs

__all__ = ["PROG", "compose_or_fail", "condense", "fail", "hydra_overrides", "one_line"]

PROG = "lightning_nas"
# Hydra flags that change what the app does (help, printing the config, shell completion...): no pre-check.
_PASSTHROUGH = {"-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-sc",
                "--shell-completion", "-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
                "--experimental-rerun", "-p", "--package", "--resolve"}
_MULTIRUN = {"-m", "--multirun"}


def one_line(text: str) -> str:
    """``text`` with its whitespace (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())


def fail(message: str | BaseException) -> NoReturn:
    """Write ``lightning_nas: error: <message>`` as one line on stderr and exit with status 2."""
    sys.stderr.write(f"{PROG}: error: {one_line(str(message))}\n")
    sys.stderr.flush()
    raise SystemExit(2)


def hydra_overrides(argv: Sequence[str]) -> tuple[list[str], bool] | None:
    """``(overrides, multirun)`` from a Hydra command line; None when a flag asks for something else."""
    if any(arg.split("=", 1)[0] in _PASSTHROUGH for arg in argv):
        return None
    return [arg for arg in argv if arg not in _MULTIRUN], any(arg in _MULTIRUN for arg in argv)


def _typed(key: str, overrides: Sequence[str]) -> str | None:
    """The override the user typed for ``key`` (or for a group option or parent of it), if any."""
    for override in overrides:
        name = override.split("=", 1)[0].lstrip("+~")
        if name == key or key.startswith(f"{name}.") or name.startswith(f"{key}."):
            return override
    return None


def _choices(text: str) -> str:
    names = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
    return ", ".join(n for n in names if not n.endswith("_schema"))


def _experiment_clash(key: str, text: str, overrides: Sequence[str]) -> str | None:
    """An experiment's key that the group option the user chose lacks: reported against that option."""
    source = re.search(r"In 'experiment/([^']+)'", text)
    group = key.split(".", 1)[0]
    chosen = next((o for o in overrides if o.split("=", 1)[0].lstrip("+") == group), None)
    if source is None or chosen is None:
        return None
    return (f"{group}: experiment={source.group(1)} sets {key}, which {chosen} does not have "
            f"(choose the experiment's own {group}, or drop experiment={source.group(1)})")


def _keyed(error: BaseException, overrides: Sequence[str]) -> str | None:
    """A message for an error whose text names ``full_key``."""
    texts = [str(error.__cause__ or ""), str(error)]
    found = next((m for t in texts if (m := re.search(r"full_key: (\S+)", t))), None)
    if found is None:
        return None
    key, text = found.group(1), "\n".join(texts)
    clash = _experiment_clash(key, text, overrides)
    if clash is not None and not any(o.split("=", 1)[0].lstrip("+~") == key for o in overrides):
        return clash
    skip = ("In '", "Error ", "Could not", "full_key:", "object_type=", "reference_type=")
    what = next((line.strip() for t in texts for line in t.splitlines()
                 if line.strip() and "raised while composing" not in line and not line.strip().startswith(skip)),
                type(error).__name__)
    typed = _typed(key, overrides)
    if "not in '" in what:
        fix = "check the spelling; `--cfg job` prints every setting"
    elif "Interpolation" in what:
        fix = "check the ${...} reference" + (f" in {typed}" if typed else "")
    elif "Missing mandatory value" in what:
        fix = f"pass {key}=..."
    else:
        fix = f"you typed {typed}" if typed else "check the value"
    return f"{key}: {what} ({fix})"


def condense(error: BaseException, overrides: Sequence[str]) -> str:
    """A one-line ``<key>: <what> (<fix>)`` for a Hydra composition or OmegaConf error."""
    text = str(error)
    if (isinstance(error, AssertionError) and "NoneType" in text) or "'NoneType' object has no attribute 'get'" in (
            text + str(error.__cause__ or "")):  # OmegaConf: a key set under a null node
        return _set_under_null(overrides)
    keyed = _keyed(error, overrides)
    if keyed is not None:
        return one_line(keyed)
    if (found := re.search(r"Could not find '([^/']+)/([^']+)'", text)) is not None:
        group, option = found.groups()
        return one_line(f"{group}: no option '{option}' (choose one of: {_choices(text)})")
    if (found := re.search(r"Ambiguous value for argument '([^=']+)=([^']*)'", text)) is not None:
        key, value = found.groups()
        return f"{key}: {value} is several values (add -m to sweep them, or write {key}=[{value}] for a list)"
    if (found := re.search(r"Error parsing override '([^']*)'", text)) is not None:
        detail = text.splitlines()[1] if len(text.splitlines()) > 1 else "bad syntax"
        key = found.group(1).split("=", 1)[0] or found.group(1)
        return one_line(f"{key}: cannot parse the override '{found.group(1)}': {detail} (write key=value)")
    if (found := re.search(r"Could not (?:override|append to|delete from) '([^']+)'", text)) is not None:
        return one_line(f"{found.group(1)}: {text.splitlines()[0]} ({' '.join(text.splitlines()[1:]) or 'check it'})")
    key = next((o.split("=", 1)[0].lstrip("+~") for o in overrides if o.split("=", 1)[0].lstrip("+~") in text),
               "config")
    return one_line(f"{key}: {text.strip().splitlines()[0] if text.strip() else type(error).__name__}")


def _set_under_null(overrides: Sequence[str]) -> str:
    """``+a.b.c=v`` or ``a.b={...}`` where ``a.b`` is null: OmegaConf cannot merge into a null node."""
    added = [o for o in overrides if o.startswith("+") or "={" in o] or list(overrides) or ["config"]
    key, _, value = added[0].lstrip("+~").partition("=")
    null_node = key if value.startswith("{") else key.rpartition(".")[0] or key
    example = ", as conf/experiment/multi_objective.yaml does" if null_node == "objective.constraints" else ""
    return one_line(f"{key}: {null_node} is null in the chosen preset and OmegaConf cannot set keys under a "
                    f"null node from the command line (set {null_node} in a YAML preset or experiment{example})")


def compose_or_fail(config_module: str, config_name: str, overrides: Sequence[str]) -> DictConfig:
    """The config the app would compose from ``overrides``, fully resolved; ConfigError in one line if not."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    try:
        with initialize_config_module(config_module=config_module, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException, AttributeError, ValueError, AssertionError) as error:
        raise ConfigError(condense(error, overrides)) from error
    return cfg
