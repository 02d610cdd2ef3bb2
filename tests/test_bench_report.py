"""What a results file says about its run: on a GPU a float32 peak GEMM must say whether it
ran in TF32 (fused_rnn.mm follows torch.nn's cuDNN RNN flag, torch.mm the matmul flag), since
the two differ by 7x on an H200 and the float32 rows' "% of peak" divides by the faster; the
commit must be the one that ran, also where the tree's .git lags (the GPU machine); and a
target's measured value must never print as its minimum when it missed it."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import report  # noqa: E402  (bench/ is not a package)
import targets  # noqa: E402
import throughput  # noqa: E402


def meta(device, cudnn_tf32=True, matmul_tf32=False):
    return {"device": device, "peak_gflops": {"float32": 386.0, "bfloat16": 745.0},
            "tf32": {"cudnn_allow_tf32": cudnn_tf32, "matmul_allow_tf32": matmul_tf32},
            "peak_gflops_measurements": {d: [{"torch.mm": 51.0, "fused_rnn.mm": 386.0 if d == "float32" else 745.0}]
                                         for d in ("float32", "bfloat16")}}


def test_gpu_float32_peak_names_each_gemms_precision():
    assert report.peak_text(meta("cuda"), "float32") == \
        "float32: 386.0 GFLOP/s (fused_rnn.mm in TF32; torch.mm in float32 51.0)"
    assert report.peak_text(meta("cuda", cudnn_tf32=False, matmul_tf32=True), "float32") == \
        "float32: 386.0 GFLOP/s (fused_rnn.mm in float32; torch.mm in TF32 51.0)"


def test_other_dtypes_and_the_cpu_carry_no_precision_note():
    assert report.peak_text(meta("cuda"), "bfloat16") == "bfloat16: 745.0 GFLOP/s (fused_rnn.mm; torch.mm 51.0)"
    assert report.peak_text(meta("cpu"), "float32") == "float32: 386.0 GFLOP/s (fused_rnn.mm; torch.mm 51.0)"


def test_commit_named_by_the_sender_wins_over_a_lagging_git(monkeypatch):
    monkeypatch.delenv("FUSED_RNN_GIT_COMMIT", raising=False)
    from_git = throughput.git_commit()
    assert from_git != "unknown" and len(from_git.split("-")[0]) >= 7
    monkeypatch.setenv("FUSED_RNN_GIT_COMMIT", "abc1234")
    assert throughput.git_commit() == "abc1234"


def test_a_near_miss_prints_on_its_side_of_the_minimum():
    assert targets.shown_value(1.4983, 1.5, "speedup") == "1.498x"
    assert targets.shown_value(0.99964, 1.0, "speedup") == "0.9996x"
    assert targets.shown_value(1.5031, 1.5, "speedup") == "1.503x"
    assert targets.shown_value(1.5, 1.5, "speedup") == "1.50x"
    assert targets.shown_value(1.61, 1.5, "speedup") == "1.61x"
    assert targets.shown_value(0.7496, 0.75, "peak_fraction") == "74.96%"
    assert targets.shown_value(0.83, 0.75, "peak_fraction") == "83%"
    assert targets.shown_value(None, 1.5, "speedup") == "-"
