"""`tools/misc/make_synthetic.py medical`: layout as published, deterministic, fast."""
import csv
import hashlib
from pathlib import Path

import pytest

from interlace.domains.medical.data.synthetic import CHEXPERT_CSV, METADATA_CSV, NEGBIO_CSV

@pytest.fixture(scope="module")
def tool():
    from interlace.tools import make_synthetic
    return make_synthetic


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_cli_writes_the_published_layout_deterministically(tool, tmp_path, capsys):
    for name in ("a", "b"):
        assert tool.main(["medical", "--out", str(tmp_path / name), "--studies", "6",
                          "--seed", "7"]) == 0
    assert "6 studies" in capsys.readouterr().out
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    root = tmp_path / "a"
    with (root / METADATA_CSV).open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        subject = row["subject_id"]
        image = (root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{row['study_id']}"
                 / f"{row['dicom_id']}.jpg")
        assert image.is_file()
        assert 256 <= int(row["Rows"]) <= 512
        assert image.parent.with_suffix(".txt").read_text().lstrip().startswith("FINAL REPORT")
    assert (root / CHEXPERT_CSV).read_text() == (root / NEGBIO_CSV).read_text()


def test_cli_help_shows_an_example(tool, capsys):
    with pytest.raises(SystemExit):
        tool.main(["--help"])
    assert "make_synthetic.py medical --out" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tool.main(["medical", "--help"])
    assert "--with-bad-cases" in capsys.readouterr().out


# ------------------------------------------------------------------ drawn findings
def _frontal(truth_kwargs, seed):
    import numpy as np

    from interlace.domains.medical.data.synthetic import StudyTruth, _draw_frontal
    truth = StudyTruth(subject_id=10_000_000 + seed, study_id=1, split="train", **truth_kwargs)
    return _draw_frontal(np.random.default_rng(seed), truth, 192, 192)


def _ring(mask, width=6):
    """Pixels within `width` px of the mask, outside it."""
    from scipy.ndimage import binary_dilation
    return binary_dilation(mask, iterations=width) & ~mask


@pytest.mark.parametrize("side", ["right", "left"])
def test_opacity_is_subtle_but_brighter_than_its_surroundings_and_on_its_side(side):
    import numpy as np

    contrasts = []
    for seed in range(12):
        zone = ("upper", "lower")[seed % 2]
        image, masks = _frontal(dict(opacity=(side, zone)), seed)
        opacity = masks["opacity"]
        assert opacity.any() and not masks["effusion"].any()
        columns = np.flatnonzero(opacity.any(axis=0))
        # radiology orientation: the patient's right is on the viewer's left
        assert (columns.mean() < 96) == (side == "right")
        rows = np.flatnonzero(opacity.any(axis=1)).mean() / 192
        assert (rows < 0.45) == (zone == "upper")
        ring = _ring(opacity) & ~masks["heart"] & (image > 0)
        contrasts.append(image[opacity].mean() - image[ring].mean())
    contrasts = np.array(contrasts)
    assert (contrasts > 0).mean() >= 0.9          # visible ...
    assert np.median(contrasts) < 40              # ... but far subtler than the 110 it was


def test_cardiomegaly_heart_mask_is_wider_than_any_normal_heart():
    def width(masks):
        return masks["heart"].mean(axis=1).max()
    enlarged = [width(_frontal(dict(cardiomegaly=True), s)[1]) for s in range(8)]
    normal = [width(_frontal(dict(), s)[1]) for s in range(8)]
    assert min(enlarged) > max(normal)


def test_patients_and_exposures_vary_but_a_patient_keeps_the_anatomy():
    import numpy as np

    from interlace.domains.medical.data.synthetic import _patient_anatomy
    assert _patient_anatomy(123) == _patient_anatomy(123)
    assert _patient_anatomy(123) != _patient_anatomy(124)
    means = [_frontal(dict(), seed)[0].mean() for seed in range(8)]
    assert np.ptp(means) > 10  # exposure differs between images


def test_effusion_mask_is_on_the_named_side_at_the_lung_base():
    import numpy as np

    for seed, side in enumerate(["right", "left", "right", "left"]):
        image, masks = _frontal(dict(effusion=side), seed)
        fluid = masks["effusion"]
        assert fluid.any()
        assert (np.flatnonzero(fluid.any(axis=0)).mean() < 96) == (side == "right")
        assert np.nonzero(fluid)[0].mean() > 0.55 * 192  # the base, not the apex


def test_tube_is_as_wide_as_a_real_one_and_brighter_than_the_spine_under_it():
    """An adult endotracheal tube is ~1 cm across on a 35-43 cm film: 2-3 % of the width,
    so it stays 2-3 px wide when a model downsamples the image to 96 px."""
    import numpy as np
    from scipy.ndimage import binary_dilation

    for seed in range(6):
        image, masks = _frontal(dict(support_device=True), seed)
        tube = masks["device"]
        widths = tube.sum(axis=1)[tube.any(axis=1)]
        assert 0.018 * 192 <= np.median(widths) <= 0.032 * 192 + 1
        assert np.flatnonzero(tube.any(axis=1)).max() < 0.4 * 192  # stops above the carina
        beside = binary_dilation(tube, iterations=3) & ~tube
        assert image[tube].mean() - image[beside].mean() > 10
