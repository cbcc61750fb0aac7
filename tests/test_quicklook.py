"""`sr --quicklook`: one window, bicubic | SR | reference | relevance, on the bundled
example with the shipped model."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rrsgan_geo.cli.main import main
from rrsgan_geo.sr.quicklook import ZOOM

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"
SCENE = EXAMPLES / "sjer_scene_0.4m_utm11n.tif"
REFERENCE = EXAMPLES / "sjer_reference_0.1m_epsg3857.tif"


def _high_frequency(panel: np.ndarray) -> float:
    """Mean squared Laplacian of a panel's grey levels, at its own pixel size."""
    grey = panel.mean(axis=-1)[::ZOOM, ::ZOOM]
    laplacian = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1]
    laplacian -= grey[1:-1, :-2] + grey[1:-1, 2:]
    return float((laplacian**2).mean())


@pytest.mark.slow
def test_the_quicklook_shows_sr_sharper_than_bicubic(tmp_path):
    picture = tmp_path / "look.png"
    command = ["sr", str(SCENE), "--ref", str(REFERENCE), "-o", str(tmp_path / "x4.tif")]
    result = CliRunner().invoke(main, [*command, "--quicklook", str(picture)])
    assert result.exit_code == 0, result.output
    assert f"wrote {picture}" in result.output
    image = np.asarray(Image.open(picture).convert("RGB")).astype(np.float64)
    side = 64 * 4 * ZOOM  # the window: 64 scene pixels, 4x, drawn at ZOOM
    top = 20
    panels = [image[top : top + side, i * (side + 6) : i * (side + 6) + side] for i in range(4)]
    bicubic, sr, reference, relevance = panels
    assert _high_frequency(sr) > 1.5 * _high_frequency(bicubic)
    assert _high_frequency(reference) > _high_frequency(bicubic)
    assert np.allclose(relevance[..., 0], relevance[..., 2])  # grey: a gate, not a colour


def test_a_quicklook_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    command = ["sr", str(SCENE), "--ref", str(REFERENCE), "-o", str(tmp_path / "x4.tif")]
    wrong = CliRunner().invoke(main, [*command, "--quicklook", str(tmp_path / "look.jpg")])
    assert wrong.exit_code == 1 and "name it .png" in wrong.output
    (tmp_path / "look.png").write_bytes(b"taken")
    taken = CliRunner().invoke(main, [*command, "--quicklook", str(tmp_path / "look.png")])
    assert taken.exit_code == 1 and "pass --overwrite" in taken.output
    assert not (tmp_path / "x4.tif").exists()
