"""Reading config files and command-line overrides into a ConfigDict (`purejax.config.load`)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
import types
from typing import Any

import ml_collections

from purejax.config_checks import ConfigError, fail, items, type_name


def import_config_module(source) -> types.ModuleType:
    if isinstance(source, types.ModuleType):
        return source
    if not isinstance(source, str):
        raise ConfigError(
            f"load: expected a config file path, module name or module, got {type(source).__name__}."
        )
    if source.endswith(".py") or os.path.sep in source:
        path = os.path.abspath(source)
        if not os.path.isfile(path):
            raise ConfigError(f"load: config file {source!r} not found.")
        # Config files import their fragments as `from configs import common`.
        root = os.path.dirname(os.path.dirname(path))
        if root not in sys.path:
            sys.path.insert(0, root)
        name = f"_purejax_config_{os.path.splitext(os.path.basename(path))[0]}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(source)


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"load: override {text!r} must look like 'rewards.vr.weight=2'.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if key.startswith("config."):
        key = key[len("config.") :]
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()  # a bare string such as credit=min
    return key, value


def apply_override(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets the existing dotted field `key`; unknown fields fail with a suggestion."""
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
        fields = list(items(node))
        if part not in fields:
            fail(
                ".".join(parts[: i + 1]),
                "unknown key (overrides may only set existing fields)",
                allowed=fields,
                got=part,
            )
        if i < len(parts) - 1:
            node = node[part]
    current = node[parts[-1]]
    if isinstance(value, bool) and not isinstance(current, bool):
        # ConfigDict would store True in a float field as 1.0, where validation cannot see it.
        fail(key, f"must be a {type_name(current)}, got bool {value!r}")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    try:
        with node.unlocked():
            node[parts[-1]] = value
    except TypeError:
        fail(key, f"must be a {type_name(current)}, got {type_name(value)} {value!r}")
