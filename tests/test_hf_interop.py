"""HF interop of exported and loaded checkpoints: generation_config.json, file modes, Hub ids
from the local cache, and one clear error (file, tensor) for every damaged checkpoint."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import purejax.models as pm
from purejax import atomic, model_paths
from purejax.models.hf_io import CheckpointError
from tests._hub_cache import add_to_cache, offline_cache
from tests._tiny_hf import build_tiny_tokenizer, save_tiny_hf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Qwen2 checkpoint and a tokenizer that has Qwen's end-of-turn token."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("tiny")
    path = save_tiny_hf(root / "model", "qwen2_gqa")
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_tokenizer(root / "tok", vocab_size=200))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    return path, tokenizer


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def _modes(root):
    out = {}
    for directory, _, files in os.walk(root):
        out[os.path.relpath(directory, root)] = stat.S_IMODE(os.stat(directory).st_mode)
        for name in files:
            out[os.path.relpath(os.path.join(directory, name), root)] = stat.S_IMODE(
                os.stat(os.path.join(directory, name)).st_mode
            )
    return out


# ---------------------------------------------------------------- export


def test_export_writes_the_samplers_stop_ids_as_generation_config(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, GenerationConfig

    from purejax.sampling import stop_token_ids

    path, tokenizer = tiny
    out = str(tmp_path / "export")
    pm.export_pretrained(pm.load_pretrained(path), tokenizer, out)
    generation = GenerationConfig.from_pretrained(out)
    # Independent of stop_token_ids: the ids of the tokens by name.
    expected = sorted({tokenizer.convert_tokens_to_ids("</s>"), tokenizer.convert_tokens_to_ids("<|im_end|>")})
    assert len(expected) == 2 and sorted(np.atleast_1d(generation.eos_token_id)) == expected
    assert sorted(np.atleast_1d(generation.eos_token_id)) == stop_token_ids(tokenizer)
    assert generation.pad_token_id == tokenizer.pad_token_id == 0
    assert AutoModelForCausalLM.from_pretrained(out) is not None


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)])
def test_exported_files_respect_the_umask(tiny, tmp_path, umask, file_mode, dir_mode):
    path, tokenizer = tiny
    old = os.umask(umask)
    try:
        out = str(tmp_path / "export")
        pm.export_pretrained(pm.load_pretrained(path), tokenizer, out, extra_json={"purejax.json": {"a": 1}})
        atomic.write_text(str(tmp_path / "metrics.jsonl"), "{}\n")
    finally:
        os.umask(old)
    modes = _modes(out)
    assert modes.pop(".") == dir_mode
    assert {"config.json", "model.safetensors", "generation_config.json", "purejax.json"} <= set(modes)
    assert set(modes.values()) == {file_mode}, modes
    assert stat.S_IMODE(os.stat(tmp_path / "metrics.jsonl").st_mode) == file_mode


# ---------------------------------------------------------------- Hub ids


def _params(model):
    from flax import nnx

    return {k: np.asarray(v.get_value()) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_a_hub_id_loads_from_the_local_cache_offline(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    cache = offline_cache(monkeypatch, tmp_path / "hub")
    snapshot = add_to_cache(cache, "tinyorg/tiny-qwen", "model", {"": path})
    assert model_paths.require_checkpoint_dir("tinyorg/tiny-qwen", "policy.path", "the policy") == snapshot
    got, want = _params(pm.load_pretrained("tinyorg/tiny-qwen")), _params(pm.load_pretrained(path))
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    assert pm.load_config("tinyorg/tiny-qwen") == pm.load_config(path)
    with pytest.raises(FileNotFoundError) as error:
        model_paths.require_checkpoint_dir("tinyorg/missing", "prm.path", "the PRM checkpoint")
    message = str(error.value)
    assert "config.prm.path='tinyorg/missing'" in message and "hf download tinyorg/missing" in message
    assert "huggingface-cli" not in message and cache in message


def test_a_network_failure_falls_back_to_the_cache(tiny, tmp_path, monkeypatch):
    import huggingface_hub

    path, _ = tiny
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    snapshot = add_to_cache(str(tmp_path / "hub"), "tinyorg/tiny-qwen", "model", {"": path})
    real, calls = huggingface_hub.snapshot_download, []

    def no_network(*args, local_files_only=False, **kwargs):
        calls.append(local_files_only)
        if not local_files_only:
            raise ConnectionError("network unreachable")
        return real(*args, local_files_only=True, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    assert model_paths.resolve_checkpoint("tinyorg/tiny-qwen") == snapshot
    assert calls == [False, True]
    with pytest.raises(FileNotFoundError, match=r"could not be reached: ConnectionError.*hf download tinyorg/none"):
        model_paths.resolve_checkpoint("tinyorg/none")


def test_paper_checkpoints_name_the_current_download_command(monkeypatch, tmp_path):
    offline_cache(monkeypatch, tmp_path / "empty")
    with pytest.raises(FileNotFoundError) as error:
        model_paths.require_checkpoint_dir("Qwen/Qwen2.5-Math-7B", "policy.path", "the policy checkpoint")
    message = str(error.value)
    assert "hf download Qwen/Qwen2.5-Math-7B" in message and "huggingface-cli" not in message


# ---------------------------------------------------------------- damaged checkpoints (issue 17 item 11)


def _edit_tensor(path, name, value):
    file = os.path.join(path, "model.safetensors")
    tensors = load_file(file)
    tensors[name] = value(tensors[name])
    save_file(tensors, file, metadata={"format": "pt"})
    return file


NAME = "model.layers.1.mlp.up_proj.weight"


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda w: w.astype(np.int32), "dtype I32"),
        (lambda w: w > 0, "dtype BOOL"),
        (lambda w: np.where(np.arange(w.size).reshape(w.shape) == 5, np.nan, w).astype(w.dtype), "1 NaN or infinite"),
        (lambda w: np.full_like(w, np.inf), f"{64 * 32} NaN or infinite"),
    ],
)
def test_non_float_and_non_finite_weights_name_file_and_tensor(tiny, tmp_path, edit, problem):
    path = _copy(tiny[0], tmp_path / "ckpt")
    file = _edit_tensor(path, NAME, edit)
    with pytest.raises(CheckpointError, match=rf"{file}: tensor '{NAME}' has {problem}"):
        pm.load_pretrained(path)


@pytest.mark.parametrize("damage", ["truncate", "garble_header", "garble_length"])
def test_truncated_or_garbled_safetensors_name_the_file(tiny, tmp_path, damage):
    path = _copy(tiny[0], tmp_path / "ckpt")
    file = os.path.join(path, "model.safetensors")
    raw = bytearray(Path(file).read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "garble_header":
        raw[8:72] = b"\xff" * 64
    else:  # the 8-byte header length says more than the file holds
        raw[:8] = (len(raw) * 4).to_bytes(8, "little")
    Path(file).write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=rf"{file}: not a readable safetensors file"):
        pm.load_pretrained(path)


@pytest.mark.parametrize(
    "text, problem",
    [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object"), (None, "missing key 'hidden_size'")],
)
def test_an_invalid_config_json_names_its_path(tiny, tmp_path, text, problem):
    path = _copy(tiny[0], tmp_path / "ckpt")
    config_path = os.path.join(path, "config.json")
    if text is None:
        config = json.loads(Path(config_path).read_text())
        del config["hidden_size"]
        text = json.dumps(config)
    Path(config_path).write_text(text)
    with pytest.raises(CheckpointError, match=rf"{config_path}: .*{problem}"):
        pm.load_pretrained(path)
