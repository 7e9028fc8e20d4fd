"""`benchmark.py driving`: the DeepInteraction++ end-to-end benchmark runs at smoke
scale (tiny config, tiny generated sample) and writes per-stage latency, FLOPs and the
fraction of the matmul peak to its JSON table."""
import json

from tests.fixtures.tools import run_tool

BENCHMARK = "tools/analysis_tools/benchmark.py"

DETECTOR_CASES = ("di_pp_inference_fp32", "di_pp_inference_bf16", "di_pp_train_step_fp32")
FORWARD_STAGES = {"voxelise", "sparse_encoder", "bev_backbone", "image_backbone",
                  "correspondence", "interaction_encoder", "decoder", "other"}


def _stage_names(row: dict) -> set:
    return {s["stage"] for s in json.loads(row["ours"]["notes"])["stages"]}


def test_driving_benchmark_smoke_reports_stages_flops_and_peak_fraction(tmp_path):
    out = tmp_path / "driving.json"
    proc = run_tool(BENCHMARK, "driving", "--scale", "smoke", "--repeats", "1",
                    "--threads", "1", "--no-reference", "--out", out, timeout=900,
                    INTERLACE_BENCH_CACHE=str(tmp_path / "cache"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = {row["case"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {*DETECTOR_CASES, "matmul_peak"}
    assert all("median_s" in row["ours"] for row in rows.values()), rows

    peak = json.loads(rows["matmul_peak"]["ours"]["notes"])["matmul_peak"]
    assert peak["fp32"] > 0 and peak["bf16"] > 0
    for dtype in ("fp32", "bf16"):  # the ceiling is the faster of the two GEMM paths
        assert set(peak[f"{dtype}_by"]) == {"matmul", "conv1x1"}
        assert peak[dtype] == max(peak[f"{dtype}_by"].values())

    for case in DETECTOR_CASES:
        notes = json.loads(rows[case]["ours"]["notes"])
        stages = {s["stage"]: s for s in notes["stages"]}
        assert FORWARD_STAGES <= set(stages), (case, sorted(stages))
        assert notes["params"] > 0 and notes["params_per_stage"]["image_backbone"] > 0
        assert notes["matmul_peak"]["fp32"] > 0 and notes["vm_hwm_mib"] > 0
        assert notes["input"]["voxels"] > 0 and notes["input"]["images"][1] == 6
        # Counted (dense) and estimated (spconv) FLOPs both reach their stages.
        assert stages["image_backbone"]["flops"] > 0 and stages["bev_backbone"]["flops"] > 0
        assert stages["sparse_encoder"]["flops"] > 0
        flops = notes["flops"]
        assert flops["sparse_convs"] > 0
        assert 0 < flops["sparse_conv_counted"] + flops["sparse_conv_estimated"]
        assert flops["sparse_conv_counted"] <= flops["sparse_conv_bound_all"]
        for stage in notes["stages"]:
            assert stage["time_s"] >= 0 and stage["fraction_of_peak"] >= 0
        total = notes["total"]
        assert total["time_s"] > 0 and 0 < total["fraction_of_peak"]
        stage_sum = sum(s["flops"] for s in notes["stages"])
        assert abs(stage_sum - total["flops"]) <= 1e-6 * total["flops"]
    train = _stage_names(rows["di_pp_train_step_fp32"])
    assert {"loss", "backward"} <= train and "post_processing" not in train
    inference = _stage_names(rows["di_pp_inference_fp32"])
    assert "post_processing" in inference and "backward" not in inference

    # The per-stage table follows the harness's table.
    assert "per stage (driving):" in proc.stdout and "interaction_encoder" in proc.stdout
    assert "fp32 %peak" in proc.stdout and str(out) in proc.stdout
