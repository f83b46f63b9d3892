"""Execute docs/notebooks/inspect.ipynb and check that it runs cleanly and draws real figures."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import matplotlib.image
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "inspect.ipynb"

# Figures the notebook draws: diffraction, scan, probe, object, X, history, comparison, FRC and
# the stitched object read back from the store. History and FRC are line plots. The others are
# images that fill most of their figure.
EXPECTED_FIGURES = 9
LINE_FIGURES = {5, 7}


def _figures(notebook: nbformat.NotebookNode) -> list[np.ndarray]:
    images = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png is not None:
                images.append(matplotlib.image.imread(io.BytesIO(base64.b64decode(png))))
    return images


def _drawn_fraction(image: np.ndarray) -> float:
    """Return the fraction of pixels that differ from the white background."""
    return float(np.mean(np.any(image[..., :3] < 0.95, axis=-1)))


def _colourful_fraction(image: np.ndarray) -> float:
    """Return the fraction of coloured pixels. Axes, ticks and text are drawn in greys only."""
    rgb = image[..., :3]
    return float(np.mean(rgb.max(axis=-1) - rgb.min(axis=-1) > 0.1))


def _colour_count(image: np.ndarray) -> int:
    rgb = np.round(image[..., :3] * 255).astype(np.int32)
    return len(np.unique(rgb.reshape(-1, 3), axis=0))


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    folder = tmp_path_factory.mktemp("notebook")
    # Errors are collected instead of raised, so that the first test reports the failing cell.
    client = NotebookClient(notebook, timeout=240, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(folder)}})
    client.execute()
    return notebook


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_notebook_runs_without_errors(executed: nbformat.NotebookNode) -> None:
    errors = [f"cell {index}: {output['ename']}: {output['evalue']}"
              for index, cell in enumerate(executed.cells) for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors, errors


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_notebook_draws_every_figure(executed: nbformat.NotebookNode) -> None:
    assert len(_figures(executed)) == EXPECTED_FIGURES


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_notebook_figures_not_blank(executed: nbformat.NotebookNode) -> None:
    # An empty axes or a uniform grey image has no coloured pixels and at most 256 greys.
    for index, image in enumerate(_figures(executed)):
        assert _colourful_fraction(image) > 0.002, f"figure {index} has no coloured content"
        assert _colour_count(image) > 400, f"figure {index} has too few distinct colours"
        if index not in LINE_FIGURES:
            assert _drawn_fraction(image) > 0.25, f"figure {index} is mostly background"


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_notebook_shows_labelled_dataset(executed: nbformat.NotebookNode) -> None:
    displayed_text = "".join(output.get("data", {}).get("text/plain", "")
                    for cell in executed.cells for output in cell.get("outputs", []))
    assert re.search(r"diffraction\s+\(scan, ky, kx\) float32", displayed_text)
    assert "'units': 'sqrt(photons)'" in displayed_text
    assert "PtychoPINN" in displayed_text
