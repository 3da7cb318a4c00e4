"""bench/accelerator.py at the tiny size: one real case end to end, the budget cut, the peaks and the summary."""

import json
import sys

import pytest

from tests.helpers import BENCH

sys.path.insert(0, BENCH)  # bench/ scripts import each other (harness, imle_search) by name
import accelerator  # noqa: E402


def test_one_training_case_and_the_budget_cut(tmp_path):
    out = tmp_path / "acc.json"
    result = accelerator.run(["spade:float32:none", "spade:bfloat16:none"], "tiny", budget_s=1e-3, out_path=str(out))
    # The first case always runs (nothing measured yet to predict it); the second does not fit the budget.
    case = result["cases"]["spade:float32:none"]
    assert "error" not in case, case
    assert case["images_per_s"] > 0 and case["gflop_per_step"] > 0 and case["compile_s"] > 0
    assert case["global_batch"] == 2 and case["mfu"] is None  # a CPU has no peak in the table
    assert result["skipped"] == ["spade:bfloat16:none"] and result["stopped_at"].startswith("spade:bfloat16:none")
    assert json.loads(out.read_text())["cases"].keys() == result["cases"].keys()  # written as it goes


def test_peaks_and_summary():
    assert accelerator.peak_of("NVIDIA H100 80GB HBM3")[0] == "H100"
    assert accelerator.peak_of("NVIDIA H200")[1]["bfloat16"] == pytest.approx(989.4)
    assert accelerator.peak_of("TPU v5 lite")[0] == "TPU v5 lite" and accelerator.peak_of("cpu") == (None, None)
    cases = {"spade:float32:none": {"images_per_s": 10.0, "xla_temp_mib": 100.0},
             "spade:bfloat16:none": {"images_per_s": 25.0},
             "spade:float32:blocks": {"images_per_s": 8.0, "xla_temp_mib": 40.0},
             "cimle_search:float32": {"speedup_vs_loop": 4.2}}
    assert accelerator.summary(cases) == {"spade_bfloat16_over_float32": 2.5, "spade_remat_blocks_speed": 0.8,
                                          "spade_remat_blocks_temporaries": 0.4, "cimle_search_float32_over_loop": 4.2}
