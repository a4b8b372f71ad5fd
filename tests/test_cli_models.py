"""Model names are checked, both of them, before either model loads; a Hugging Face id is looked up
in the hub's cache first and costs at most one short request, so an offline machine fails in seconds."""

import time

import huggingface_hub
import huggingface_hub.constants
import pytest

import blendin.models
from blendin import BlendConfig
from blendin.cli import main
from blendin.errors import ModelLoadError


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, online mode, and no ids remembered from earlier tests."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for name in ("_HUB_CACHED", "_HUB_FOUND"):
        if hasattr(blendin.models, name):
            monkeypatch.setattr(blendin.models, name, set())
    return cache


def cache_model(cache, repo, files=("config.json",)):
    """Lay out ``repo`` in a hub cache as huggingface_hub does: refs/main -> snapshots/<commit>/<file>."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    snap = folder / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    for f in files:
        (snap / f).write_text("{}")


@pytest.fixture
def model_folder(tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "config.json").write_text("{}")
    return str(tmp_path / "local")


def run(capsys, *argv):
    start = time.monotonic()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, err, time.monotonic() - start


def test_an_uncached_hub_id_fails_in_seconds_with_one_line(capsys, hub_cache, model_folder, no_models):
    """No network here (or a hub that says 'no such model'): either way one line, in seconds, and the
    base, named first and fine, never loads."""
    code, err, seconds = run(capsys, "generate", "--base", model_folder, "--guide", "not-a-real/model-id", "hi")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "model 'not-a-real/model-id' not found" in err and "the Hugging Face cache" in err and "the Hugging Face hub" in err
    assert seconds < 15, f"{seconds:.1f} s"


def test_prepare_does_not_call_an_unknown_hub_id_ready(capsys, hub_cache):
    code, err, _ = run(capsys, "prepare", "--base", "not-a-real/model-id", "--guide", "not-a-real/other")
    assert code == 2 and "not-a-real/model-id" in err


def test_both_names_are_checked_before_either_model_loads(capsys, tmp_path, model_folder, no_models):
    code, err, _ = run(capsys, "generate", "--base", model_folder, "--guide", tmp_path / "no-such-folder", "hi")
    assert code == 2 and "not found" in err and "no-such-folder" in err
    (tmp_path / "empty").mkdir()
    code, err, _ = run(capsys, "generate", "--base", model_folder, "--guide", tmp_path / "empty", "hi")
    assert code == 2 and "holds no model" in err


def test_check_pair_names_the_bad_model_without_loading(tmp_path, model_folder, no_models):
    from blendin.pair import check_pair, load_pair

    bad = BlendConfig(base=model_folder, guide=str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="nope"):
        check_pair(bad)
    with pytest.raises(ModelLoadError, match="nope"):
        load_pair(bad)
    check_pair(bad, methods=("base",))  # the guide is not needed by the base alone


def test_offline_mode_never_asks_the_hub(hub_cache, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: pytest.fail("asked the hub"))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set") as e:
        blendin.models.check("org/not-downloaded")
    assert "hf download org/not-downloaded" in str(e.value)


def test_a_cached_hub_id_is_used_without_the_network(hub_cache, monkeypatch):
    cache_model(hub_cache, "org/cached-model")
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: pytest.fail("asked the hub"))
    blendin.models.check("org/cached-model")
    assert blendin.models._hub_load("org/cached-model", lambda local_files_only: local_files_only) is True


def test_a_partly_cached_hub_id_asks_the_hub_then_loads_from_it(hub_cache, monkeypatch):
    cache_model(hub_cache, "org/partial", files=("tokenizer_config.json",))
    asked = []
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, timeout=None: asked.append(url))

    def load(local_files_only):
        if local_files_only:
            raise OSError("weights not in the cache")
        return "from the hub"

    blendin.models.check("org/partial")
    assert blendin.models._hub_load("org/partial", load) == "from the hub" and len(asked) == 1


def test_a_hub_that_does_not_answer_costs_the_timeout_only(hub_cache, monkeypatch):
    monkeypatch.setattr(blendin.models, "HUB_TIMEOUT", 0.3)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: time.sleep(20))
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="cannot be reached") as e:
        blendin.models.check("org/slow-hub")
    assert time.monotonic() - start < 3
    assert "HF_HUB_OFFLINE=1" in str(e.value)


def test_an_invalid_hub_id_is_one_clear_error(hub_cache):
    with pytest.raises(ModelLoadError, match="not a valid Hugging Face id"):
        blendin.models.check("org/two words")


def test_a_tokenizer_folder_will_do_for_a_remote_model_only(tmp_path):
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    blendin.models.check(str(tok), tokenizer_only=True)
    with pytest.raises(ModelLoadError, match="no config.json"):
        blendin.models.check(str(tok))
