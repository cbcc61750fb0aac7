"""The generator's state dict is exactly the authors' (so their checkpoints load)."""

import pytest

from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model import GeneratorConfig, RRSNet


def _read_table(design_dir):
    rows = (line.split("\t") for line in (design_dir / "rrsgan_generator_state_dict.tsv").open())
    return {key: tuple(int(n) for n in shape.strip(" ()\n").split(",") if n) for key, shape in rows}


def test_state_dict_equals_the_authors_table(design_dir):
    expected = _read_table(design_dir)
    state_dict = RRSNet().state_dict()
    assert len(state_dict) == 366
    assert sum(t.numel() for t in state_dict.values()) == 8_319_000
    assert {k: tuple(t.shape) for k, t in state_dict.items()} == expected
    assert list(state_dict) == list(expected)


def test_authors_layout_loads_strictly(design_dir):
    """A state dict built only from the table's names and shapes loads with strict=True."""
    import torch

    table = _read_table(design_dir)
    RRSNet().load_state_dict({k: torch.zeros(s) for k, s in table.items()}, strict=True)


def test_gradient_kernels_are_frozen():
    model = RRSNet(GeneratorConfig(nf=16, n_blocks=1, groups=4))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"get_g_nopadding.weight_h", "get_g_nopadding.weight_v"}


def test_compact_configuration_is_smaller_and_keeps_the_key_names():
    compact = RRSNet(GeneratorConfig(nf=32, n_blocks=4, groups=8)).state_dict()
    assert "texture_transfer.body_large.3.body.2.weight" in compact
    assert "texture_transfer.body_large.4.body.2.weight" not in compact
    assert compact["Encoder_grad.layer_f.0.weight"].shape == (8, 3, 5, 5)
    assert sum(t.numel() for t in compact.values()) < 8_319_000 / 4


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"nf": 30}, "multiple of 4"),
        ({"n_blocks": 0}, "n_blocks"),
        ({"nf": 16, "groups": 8}, "must divide"),
    ],
)
def test_impossible_configurations_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        GeneratorConfig(**fields)
