"""--device and --dtype: named in BlendConfig, the CLI, serve and eval; checked before any model loads."""

import pytest
import torch

import blendin.models
from blendin import BlendConfig
from blendin.cli import main
from blendin.errors import ConfigError
from blendin.placement import Placement
from blendin.sampling import Sampler
from blendin.vocab import VocabBridge


def test_config_names_and_aliases():
    c = BlendConfig(dtype="bf16", guide_device="cpu", guide_dtype="fp32")
    assert (c.dtype, c.guide_dtype) == ("bfloat16", "float32")
    assert c.placement("base") == Placement("auto", "bfloat16")
    assert c.placement("guide") == Placement("cpu", "float32")
    assert BlendConfig(device="cuda:1").placement("guide") == Placement("cuda:1", "auto")  # the guide follows the base
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or cuda:N .*'gpu'"):
        BlendConfig(device="gpu")
    with pytest.raises(ConfigError, match="dtype must be one of auto, float32, bfloat16, float16, got 'bfloat'.*did you mean 'bfloat16'"):
        BlendConfig(dtype="bfloat")
    with pytest.raises(ConfigError, match="guide_dtype must be"):
        BlendConfig(guide_dtype="int8")


def test_auto_on_a_machine_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Placement().resolve() == (torch.device("cpu"), torch.float32)
    assert Placement("cpu", "bfloat16").resolve() == (torch.device("cpu"), torch.bfloat16)
    with pytest.raises(ConfigError, match=r"--device cuda: this machine has no CUDA GPU.*use --device cpu"):
        Placement("cuda").resolve()


def test_gpu_checks(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    with pytest.raises(ConfigError, match=r"--device cuda:3: this machine has 1 GPU \(cuda:0\)"):
        Placement("cuda:3").check()
    with pytest.raises(ConfigError, match="Tesla T4 has no bfloat16 support; use --dtype float16"):
        Placement("cuda", "bfloat16").check()
    assert Placement("cuda")._dtype(torch.device("cuda", 0)) == torch.float16  # auto on a GPU without bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert Placement("cuda")._dtype(torch.device("cuda", 0)) == torch.bfloat16


@pytest.mark.parametrize("command", ["generate", "eval", "diagnose", "serve"])
def test_cli_refuses_a_device_before_loading(no_models, models, monkeypatch, capsys, command):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    extra = {"generate": ["hi"], "eval": ["--task", "gsm8k", "--out", "unused-out"], "diagnose": [], "serve": ["--port", "0"]}[command]
    assert main([command, "--device", "cuda", *models, *extra]) == 2
    err = capsys.readouterr().err
    assert "Error: --device cuda: this machine has no CUDA GPU" in err and "ModelLoaded" not in err
    assert main([command, "--dtype", "half8", *models, *extra]) == 2
    assert "Error: --dtype must be one of auto, float32, bfloat16, float16, got 'half8'" in capsys.readouterr().err


def test_each_model_loads_where_the_config_says(no_models, models, monkeypatch, capsys):
    seen = {}

    def load(folder, spec, placement):
        seen[spec] = placement
        raise RuntimeError("stop here")

    monkeypatch.setattr(blendin.models, "_load_folder", load)
    base, guide = models[1], models[3]
    from blendin.pair import load_pair

    with pytest.raises(RuntimeError):
        load_pair(BlendConfig(base=base, guide=guide, device="cpu", dtype="bf16", guide_dtype="float32", method="base"))
    assert seen == {base: Placement("cpu", "bfloat16")}
    with pytest.raises(RuntimeError):
        load_pair(BlendConfig(base=base, guide=guide, device="cpu", guide_dtype="float32", method="guide"))
    assert seen[guide] == Placement("cpu", "float32")


def test_bridge_and_sampler_follow_the_device():
    bridge = VocabBridge(torch.tensor([0, 1, -1]), torch.tensor([True, True, False]), 3, 3, identity=True)
    assert bridge.to("cpu") is bridge
    assert bridge.to_base(torch.tensor([0.5, 0.25, 0.25])).tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert bridge.base_id(1) == 1 and bridge.base_id(2) is None
    s = Sampler(temperature=1.0, seed=3)
    first = [s.choose(torch.tensor([0.2, 0.3, 0.5])) for _ in range(5)]
    s2 = Sampler(temperature=1.0, seed=3)
    assert [s2.choose(torch.tensor([0.2, 0.3, 0.5])) for _ in range(5)] == first


def test_serve_start_up_line_says_where_local_models_run():
    from types import SimpleNamespace

    from blendin.server import startup_line
    from blendin.server.settings import ServeSettings

    local = SimpleNamespace(dtype=torch.bfloat16, device=torch.device("cuda", 0))
    pair = SimpleNamespace(base=local, guide=SimpleNamespace(tokenizer=None))  # a remote guide: nothing to say
    line = startup_line(BlendConfig(base="b", guide="g"), ServeSettings(port=8000), pair)
    assert "(base b on cuda:0 bfloat16, guide g, method blendin)" in line
