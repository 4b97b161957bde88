"""The training data path (``tumsyn train BIDS_DIR``) gives each image the prompt the app gives it.

Both paths build the source prompt with :func:`tumsyn_bids.prompts.source_prompt`; this test reads
the same sidecars through the planner (``--source`` picks each image in turn) and through
``training.data_bids.load_bids_subjects`` and compares the prompt texts, on the cases where the
copies used to drift: GE's excitation TR, multi-echo EchoTime lists, a fractional age and vendor
spellings.
"""

from __future__ import annotations

from pathlib import Path

import fixtures_bids as FX  # tests/ is on pytest's pythonpath

from tumsyn_bids.cli.options import parse_source
from tumsyn_bids.config import Settings
from tumsyn_bids.planning import build_plan
from tumsyn_bids.training.data_bids import load_bids_subjects

GE_BRAVO = {"RepetitionTime": 0.006952, "EchoTime": 0.00292, "InversionTime": 1.06, "FlipAngle": 8,
            "MagneticFieldStrength": 3, "Manufacturer": "GE MEDICAL SYSTEMS"}
MULTI_ECHO = {"RepetitionTime": 0.7, "EchoTime": [0.005, 0.0125, 0.02], "FlipAngle": 20,
              "MagneticFieldStrength": 3, "Manufacturer": "Philips Healthcare"}
UIH_T2 = {"RepetitionTime": 3.2, "EchoTime": 0.1, "FlipAngle": 90, "MagneticFieldStrength": 3,
          "Manufacturer": "United Imaging Healthcare"}
FUJI_FLAIR = {"RepetitionTime": 9.0, "EchoTime": 0.09, "InversionTime": 2.5, "FlipAngle": 90,
              "MagneticFieldStrength": 1.5, "Manufacturer": "FUJIFILM Healthcare Corporation"}

# image -> (contrast, what the prompt must say: vendor, TR, TE)
CASES = {
    "sub-01/anat/sub-01_T1w.nii.gz": ("T1w", GE_BRAVO, "Scanner: 3.0 GE;", "(None, 2.9, 1060.0, 8.0)"),
    "sub-01/anat/sub-01_T2starw.nii.gz": ("T2starw", MULTI_ECHO, "Scanner: 3.0 Philips;", "(700.0, 5.0, None, 20.0)"),
    "sub-02/anat/sub-02_T2w.nii.gz": ("T2w", UIH_T2, "Scanner: 3.0 UIH;", "(3200.0, 100.0, None, 90.0)"),
    "sub-02/anat/sub-02_FLAIR.nii.gz": ("FLAIR", FUJI_FLAIR, "Scanner: 1.5 Hitachi;", "(9000.0, 90.0, 2500.0, 90.0)"),
}


def _dataset(root: Path) -> Path:
    return FX.make_dataset(root, {rel: meta for rel, (_, meta, _, _) in CASES.items()},
                           participants="participant_id\tage\tsex\nsub-01\t45.7\tF\nsub-02\t30.99\tM\n",
                           zooms={rel: (1.0, 1.0, 1.2) for rel in CASES})


def test_training_prompts_equal_the_planned_source_prompts(tmp_path):
    bids = _dataset(tmp_path / "bids")
    planned: dict[str, str] = {}
    for rel, (contrast, *_rest) in CASES.items():
        settings = Settings(bids_dir=bids, output_dir=tmp_path / "out", work_dir=tmp_path / "work",
                            targets=("PDw",), source=parse_source(contrast),
                            participant_labels=(rel.split("/")[0][len("sub-"):],))
        (output,) = build_plan(settings, use_database=False).outputs
        assert output.source_path == bids / rel
        planned[rel] = output.source_prompt.text()

    trained = {}
    for subject in load_bids_subjects(bids):
        files = subject.meta["files"]
        for image in subject.images:
            trained[str(Path(files[image.contrast]).relative_to(bids))] = image.prompt

    assert trained == planned
    for rel, (_, _, scanner, params) in CASES.items():
        text = trained[rel]
        assert scanner in text, text
        assert text.endswith(params), text  # GE excitation TR -> None, first echo of a multi-echo list
        assert text.startswith("Age: 45; Gender: F;" if rel.startswith("sub-01") else "Age: 30; Gender: M;")
        assert "Voxel size: (1.0, 1.0, 1.2)" in text
