"""tools/train.py under torchrun: 2 CPU processes with gloo split the data and stay in sync."""
import json
import pytest
import torch

from tests.fixtures.tools import TOY_CONFIG, run_tool

pytestmark = pytest.mark.dist


def test_two_ranks_see_different_data_and_end_with_equal_weights(tmp_path):
    proc = run_tool("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                    "29517", "tools/train.py", TOY_CONFIG, "--launcher", "pytorch",
                    "--work-dir", tmp_path, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    seen = [json.loads((tmp_path / f"seen_rank{r}.json").read_text()) for r in (0, 1)]
    num_samples, epochs = 32, 2
    per_epoch = num_samples // 2
    assert len(seen[0]) == len(seen[1]) == per_epoch * epochs
    for epoch in range(epochs):
        part = [set(s[epoch * per_epoch:(epoch + 1) * per_epoch]) for s in seen]
        assert not part[0] & part[1], f"epoch {epoch}: ranks saw the same samples"
        assert part[0] | part[1] == set(range(num_samples))
    weights = [torch.load(tmp_path / f"weights_rank{r}.pt") for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    # the model moved away from its initialisation on both ranks alike
    assert weights[0]["linear.weight"].abs().sum() > 0
