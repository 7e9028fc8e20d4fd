"""`python -m interlace.info` reports versions, devices, threads and optional integrations."""
import json
import subprocess
import sys


def test_info_json_has_versions_devices_threads_and_optional_integrations(tmp_path):
    out = tmp_path / "env.json"
    proc = subprocess.run([sys.executable, "-m", "interlace.info", "--json", "--save", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    import torch
    assert report["versions"]["torch"] == torch.__version__
    assert report["versions"]["mmengine"].startswith("0.10")
    assert report["devices"]["cuda_available"] == torch.cuda.is_available()
    assert report["threads"]["torch_num_threads"] >= 1
    assert set(report["optional"]) == {"spconv", "spconv_gpu", "mmdet3d"}
    assert report["optional"]["mmdet3d"]["available"] in (True, False)


def test_info_text_report_lists_optional_integrations():
    proc = subprocess.run([sys.executable, "-m", "interlace.info"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    for line in ("Dependencies:", "Devices:", "Threads:", "GPU spconv", "mmdet3d"):
        assert line in proc.stdout
