"""Group report outliers: beyond 3 MADs AND beyond a floor a user would call different; < 5 values none."""

from __future__ import annotations

import pytest

from tumsyn_bids.reports.group import OUTLIER_FLOORS, outliers, qc_plot


def _rows(key: str, values: list[float]) -> list[dict[str, str]]:
    return [{"participant_id": f"sub-{i:02d}", "session_id": "n/a", "target": "T2w",
             "file": f"sub-{i:02d}/anat/sub-{i:02d}_desc-tumsyn_T2w.nii.gz", key: f"{v}"}
            for i, v in enumerate(values, start=1)]


def test_near_identical_times_are_never_red():
    # The case: 5.80 s beside 5.93-5.99 s is 3 MADs of a tiny spread but only 2 % off.
    values = [5.93, 5.95, 5.97, 5.99, 5.80, 5.96]
    assert outliers("seconds", values) == [False] * len(values)
    assert 'class="outlier"' not in qc_plot(_rows("seconds", values))


@pytest.mark.parametrize("key, values, odd", [
    ("seconds", [5.93, 5.95, 5.97, 5.99, 5.96, 9.5], 5),  # 60 % slower
    ("qc_psnr", [20.1, 20.3, 20.2, 20.4, 17.0, 20.2], 4),  # 3.2 dB worse
    ("mask_volume_ml", [1450, 1470, 1460, 1480, 1465, 2300], 5),
])
def test_a_real_outlier_is_red(key, values, odd):
    flags = outliers(key, values)
    assert flags == [i == odd for i in range(len(values))]
    plot = qc_plot(_rows(key, values))
    assert plot.count('class="outlier"') == 1
    assert f"sub-{odd + 1:02d}</text>" in plot  # the red dot is labelled with its participant


def test_psnr_within_one_db_is_not_an_outlier():
    assert outliers("qc_psnr", [20.00, 20.01, 20.02, 20.01, 20.00, 19.2]) == [False] * 6
    assert OUTLIER_FLOORS["qc_psnr"] == ("absolute", 1.0)


def test_fewer_than_five_values_are_never_red():
    values = [5.9, 6.0, 6.1, 60.0]
    assert outliers("seconds", values) == [False] * 4
    assert 'class="outlier"' not in qc_plot(_rows("seconds", values))
    assert outliers("seconds", values + [6.0]) == [False, False, False, True, False]
