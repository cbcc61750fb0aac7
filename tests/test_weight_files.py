"""Weight files: safetensors with metadata, authors' .pth layouts, and refusals."""

import collections
import json

import pytest
import safetensors.torch
import torch

from rrsgan_geo.errors import WeightsFormatError, WeightsMismatchError, WeightsNotFoundError
from rrsgan_geo.model.weight_files import (
    WeightsMetadata,
    load_generator,
    read_weight_file,
    save_weights,
)
from tests.conftest import COMPACT


def test_safetensors_round_trip_keeps_tensors_and_metadata(tmp_path, compact_model):
    path = tmp_path / "g.safetensors"
    metadata = WeightsMetadata(config=COMPACT, training_data="unit test", margin=24, notes="n")
    save_weights(compact_model.state_dict(), path, metadata)
    model, weights = load_generator(path)
    assert weights.has_metadata and weights.metadata == metadata
    assert len(weights.sha256) == 64
    for key, tensor in compact_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], tensor, rtol=0, atol=0)
    assert not model.training
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"params": sd},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "iter": 5},
        lambda sd: collections.OrderedDict((f"module.{k}", v) for k, v in sd.items()),
    ],
    ids=["plain", "nested-params", "nested-module-prefix", "dataparallel"],
)
def test_authors_pth_layouts_load_and_architecture_is_inferred(tmp_path, compact_model, wrap):
    path = tmp_path / "RRSGAN_G.pth"
    torch.save(wrap(compact_model.state_dict()), path)
    model, weights = load_generator(path)
    assert not weights.has_metadata
    assert weights.metadata.config == COMPACT
    x = torch.rand(1, 3, 8, 8)
    grid = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x, grid, grid, grid), compact_model(x, grid, grid, grid))


class _Payload:
    """Anything that is not a tensor: torch.load(weights_only=True) must refuse it."""


def test_pickled_objects_are_refused(tmp_path, compact_model):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": compact_model.state_dict(), "extra": _Payload()}, path)
    with pytest.raises(WeightsFormatError, match="refusing to unpickle"):
        read_weight_file(path)


def test_mismatch_names_the_first_problems(tmp_path, compact_model):
    state_dict = compact_model.state_dict()
    del state_dict["texture_transfer.head_small.0.bias"]
    state_dict["extra.weight"] = torch.zeros(1)
    state_dict["content_extractor.head.0.bias"] = torch.zeros(7)
    path = tmp_path / "bad.pth"
    torch.save(state_dict, path)
    with pytest.raises(WeightsMismatchError) as caught:
        load_generator(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "missing texture_transfer.head_small.0.bias" in message
    assert "unexpected extra.weight" in message
    assert "content_extractor.head.0.bias (7,) != (16,)" in message


def test_not_a_generator_at_all(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(WeightsMismatchError, match="not RRSNet generator weights"):
        read_weight_file(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not found"):
        read_weight_file(tmp_path / "nope.safetensors")
    for name in ("junk.safetensors", "junk.pth"):
        (tmp_path / name).write_bytes(b"\x00not weights at all" * 10)
        with pytest.raises(WeightsFormatError, match="not a readable"):
            read_weight_file(tmp_path / name)


def test_legacy_pre_1_6_torch_format_loads(tmp_path, compact_model):
    """The authors trained with torch 1.x, whose files are raw pickles, not zip archives."""
    path = tmp_path / "legacy.pth"
    torch.save(compact_model.state_dict(), path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"
    _, weights = load_generator(path)
    assert weights.metadata.config == COMPACT


def test_metadata_never_sizes_the_model_and_must_agree_with_the_tensors(tmp_path, compact_model):
    """A file whose metadata asks for a huge model (nf=100000, 10^7 blocks) or a huge
    margin is refused from its tensors' shapes, before anything is built."""
    state = compact_model.state_dict()
    for key, value in (("nf", 100_000), ("n_blocks", 10_000_000)):
        path = tmp_path / f"{key}.safetensors"
        architecture = {**compact_model.config.to_dict(), key: value}
        strings = {**WeightsMetadata(config=compact_model.config).to_strings()}
        strings["architecture"] = json.dumps({"name": "RRSNet", **architecture})
        safetensors.torch.save_file(state, path, metadata=strings)
        with pytest.raises(WeightsMismatchError, match="its metadata says"):
            load_generator(path)
    path = tmp_path / "margin.safetensors"
    strings = WeightsMetadata(config=compact_model.config).to_strings() | {"margin": "200000"}
    safetensors.torch.save_file(state, path, metadata=strings)
    with pytest.raises(WeightsFormatError, match="margin 200000 is outside"):
        read_weight_file(path)


def test_non_finite_weights_are_refused_and_info_flags_problems(tmp_path, compact_model):
    from click.testing import CliRunner

    from rrsgan_geo.cli.main import main

    state = compact_model.state_dict()
    state["texture_transfer.head_small.0.bias"][3] = float("nan")
    path = tmp_path / "diverged.safetensors"
    save_weights(state, path, WeightsMetadata(config=compact_model.config))
    with pytest.raises(WeightsFormatError, match="head_small.0.bias holds NaN"):
        load_generator(path)
    info = CliRunner().invoke(main, ["weights", "info", str(path)])
    assert info.exit_code == 0 and "holds NaN or infinite values" in info.output
