"""DeepInteraction++ end-to-end benchmark (`tools/analysis_tools/benchmark.py driving`):
the paper-size model (configs/driving/deepinteraction_pp_swint_nus.py: Swin-T + FPN,
6 x 448 x 800 images, 10 sweeps, 1440 x 1440 x 41 sparse grid, 180 x 180 BEV) on one
generated nuScenes-scale sample, per stage, in fp32 and under bf16 autocast.

Data: ``make_synthetic_nuscenes(scale='nuscenes')``, 1 scene x 2 key frames (~34k points
per sweep, six 1600 x 900 JPEGs) and its info files (10 sweeps), written once to a cache
folder (INTERLACE_BENCH_CACHE, default the system temp folder) and reused by every case.
The second key frame is used: it has 10 previous sweeps. Inference cases take the
config's ``test_pipeline``; the training step its ``train_pipeline`` (it needs the GT
boxes). The batch (1 sample) is packed once in setup; the data preprocessor (where the
voxelisation happens) runs inside the timed call.

Cases: ``di_pp_inference_fp32`` / ``di_pp_inference_bf16`` (no-grad ``mode='predict'``,
bf16 = ``torch.autocast(dtype=torch.bfloat16)``; on CPU the spconv sparse encoder stays
fp32 inside it, see :func:`sparse_encoder_in_fp32`), ``di_pp_train_step_fp32`` (train
mode, ``mode='loss'`` + backward of the summed losses; no optimiser step), and
``matmul_peak`` (square fp32 and bf16 GEMM through ``torch.matmul`` and through a oneDNN
1 x 1 convolution; the faster is the FLOP/s ceiling, see :func:`matmul_peak`).

Stages are timed with wall-clock timers around the detector's sub-modules (forward hooks)
and a few of its methods (wrapped on the instance; the model code is not edited); FLOPs per
stage come from a separate, untimed run under ``FlopCounterMode`` (plus estimates for
spconv on GPU and ``grid_sample``, which it cannot see), and each stage's share of the
GEMM ceiling of its dtype is reported. The stages, the FLOP counting, the ceiling and the
memory figures are described in docs/benchmarks.md. Device: CUDA when available, else CPU.

Smoke scale (the test suite): configs/driving/deepinteraction_r18_synthetic_tiny.py
(ResNet-18, 96 x 160 images, 3 sweeps, 20 x 20 BEV) on ``scale='cpu'`` generated data,
256 x 256 matmuls.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .common import BenchCase, Prepared

ROOT = Path(__file__).resolve().parents[3]  # the source checkout: configs/ is not installed
CONFIGS = {"full": ROOT / "configs/driving/deepinteraction_pp_swint_nus.py",
           "smoke": ROOT / "configs/driving/deepinteraction_r18_synthetic_tiny.py"}
DATA_SCALE = {"full": "nuscenes", "smoke": "cpu"}
SWEEPS = {"full": 10, "smoke": 3}
MATMUL_SIZE = {"full": 2048, "smoke": 256}
VERSION = "v1.0-mini"
_CACHE_VERSION = 1

STAGES = ("voxelise", "sparse_encoder", "bev_backbone", "image_backbone", "correspondence",
          "interaction_encoder", "decoder", "post_processing", "loss", "backward", "other")


# --- device, dtype -------------------------------------------------------------------------
def _device():
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _autocast(dtype: str):
    import torch
    if dtype == "bf16":
        return torch.autocast(_device().type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- data ----------------------------------------------------------------------------------
def _cache_root() -> Path:
    return Path(os.environ.get("INTERLACE_BENCH_CACHE", tempfile.gettempdir()))


def dataset_root(scale: str) -> Path:
    """The generated database (1 scene x 2 key frames) with its info files, made once."""
    from interlace.domains.driving.data.info_creation import create_nuscenes_infos
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes

    root = _cache_root() / f"interlace-bench-driving-{scale}-v{_CACHE_VERSION}"
    if (root / "COMPLETE").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        make_synthetic_nuscenes(tmp, 1, 2, version=VERSION, scale=DATA_SCALE[scale], seed=0,
                                verbose=False)
        # The info files hold names relative to the data root: the folder can be moved.
        create_nuscenes_infos(tmp, VERSION, tmp, max_sweeps=SWEEPS[scale], progress=False)
        (tmp / "COMPLETE").write_text("")
        if (root / "COMPLETE").exists():  # another case made it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            return root
        shutil.rmtree(root, ignore_errors=True)  # an interrupted earlier attempt
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _info_file(root: Path) -> str:
    from interlace.core.engine.safe_pickle import load_pickle
    for split in ("train", "val"):
        path = root / f"nuscenes_infos_{split}.pkl"
        if path.exists() and len(load_pickle(path)["data_list"]) >= 2:
            return path.name
    raise FileNotFoundError(f"no info file with 2 samples under {root}")


def _batch(cfg, root: Path, train: bool) -> dict:
    """The second key frame through the config's test (or train) pipeline, collated."""
    import torch
    from mmengine.dataset import pseudo_collate

    from interlace.core.engine.registry import DATASETS

    source = cfg.train_dataloader.dataset
    source = source.get("dataset", source)  # CBGSDataset wraps the dataset
    dataset_cfg = copy.deepcopy(source)
    dataset_cfg.update(data_root=str(root), ann_file=_info_file(root), version=VERSION,
                       serialize_data=False, test_mode=not train,
                       pipeline=cfg.train_pipeline if train else cfg.test_pipeline)
    dataset_cfg.pop("load_interval", None)
    np.random.seed(0)
    torch.manual_seed(0)
    dataset = DATASETS.build(dataset_cfg)
    return pseudo_collate([dataset[len(dataset) - 1]])


def _model(cfg):
    import torch

    from interlace.core.engine.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(copy.deepcopy(cfg.model)).to(_device())


def _config(scale: str):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from interlace.core.engine.registry import register_all_modules
    register_all_modules()
    init_default_scope("interlace")
    return Config.fromfile(str(CONFIGS[scale]))


# --- stage timers --------------------------------------------------------------------------
class StageMeter:
    """Wall time (and, while a FlopCounterMode is attached, FLOPs) per stage of the
    detector, through forward pre / post hooks and wrapped instance methods."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.flops: dict[str, float] = {}
        self.counter = None  # FlopCounterMode while counting
        self._open: dict[str, list] = {}  # stage -> [start time, start flops, depth]
        self._handles: list = []
        self._restore: list[Callable[[], None]] = []

    def reset(self) -> None:
        self.times, self.flops, self._open = {}, {}, {}

    def _flop_total(self) -> float:
        return float(self.counter.get_total_flops()) if self.counter is not None else 0.0

    def start(self, stage: str) -> None:
        entry = self._open.get(stage)
        if entry is not None:  # re-entered (nested call of the same stage)
            entry[2] += 1
            return
        _sync()
        self._open[stage] = [time.perf_counter(), self._flop_total(), 1]

    def stop(self, stage: str) -> None:
        entry = self._open.get(stage)
        if entry is None:
            return
        entry[2] -= 1
        if entry[2] > 0:
            return
        _sync()
        del self._open[stage]
        self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - entry[0]
        self.flops[stage] = self.flops.get(stage, 0.0) + self._flop_total() - entry[1]

    @contextlib.contextmanager
    def stage(self, stage: str):
        self.start(stage)
        try:
            yield
        finally:
            self.stop(stage)

    def add_module(self, stage: str, module) -> None:
        if module is None:
            return
        self._handles.append(module.register_forward_pre_hook(lambda *_: self.start(stage)))
        self._handles.append(module.register_forward_hook(lambda *_: self.stop(stage)))

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        """Time ``owner.name`` (an instance's method or a module's function)."""
        original = getattr(owner, name)
        had_own = isinstance(owner, type(sys)) or name in getattr(owner, "__dict__", {})

        @functools.wraps(original)
        def timed(*args, **kwargs):
            with self.stage(stage):
                return original(*args, **kwargs)
        setattr(owner, name, timed)
        self._restore.append(lambda: setattr(owner, name, original) if had_own
                             else delattr(owner, name))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for restore in reversed(self._restore):
            restore()
        self._handles, self._restore = [], []


def stage_modules(model) -> dict[str, list]:
    """The detector's sub-modules of each stage (for the hooks and the parameter counts)."""
    lidar = model.lidar_encoder
    return {"sparse_encoder": [lidar.voxel_encoder, lidar.middle_encoder],
            "bev_backbone": [lidar.backbone, lidar.neck, getattr(model, "bev_proj", None)],
            "image_backbone": [getattr(model, "camera_encoder", None),
                               *getattr(model, "image_proj", [])],
            "correspondence": [getattr(model, "pillar_grid", None)],
            "interaction_encoder": [getattr(model, "interaction_encoder", None)],
            "decoder": [model.bbox_head]}


def attach(meter: StageMeter, model) -> None:
    from interlace.domains.driving.models.detectors import deep_interaction_detector

    for stage, modules in stage_modules(model).items():
        for module in modules:
            meter.add_module(stage, module)
    meter.wrap(model.data_preprocessor, "_voxelize", "voxelise")
    meter.wrap(deep_interaction_detector, "build_batch_correspondence", "correspondence")
    meter.wrap(model.bbox_head, "predict_by_feat", "post_processing")
    meter.wrap(model, "_pack", "post_processing")
    meter.wrap(model.bbox_head, "loss_by_feat", "loss")


# --- FLOPs the counter cannot see ----------------------------------------------------------
class SparseConvFlops:
    """spconv convolution FLOPs that FlopCounterMode does not see.

    On CPU spconv's native algorithm gathers, multiplies with ``torch.mm`` per kernel
    offset and scatters, so the counter sees those matmuls exactly (``counted``). Kernels
    outside the dispatcher (implicit GEMM on GPU) are invisible to it: for a conv whose
    call did not grow the counter, the bound 2 x active output sites x kernel volume x
    C_in x C_out is added (``estimated``). ``bound_all`` is that bound for every conv."""

    def __init__(self, counter) -> None:
        self.counter = counter
        self.counted = 0.0
        self.estimated = 0.0
        self.bound_all = 0.0
        self.convs = 0
        self._start: list[float] = []
        self._handles: list = []

    def install(self, model) -> None:
        from interlace.core.ops.sparse_conv import spconv
        if spconv is None:
            return
        from spconv.pytorch.conv import SparseConvolution
        for module in model.modules():
            if isinstance(module, SparseConvolution):
                self._handles.append(module.register_forward_pre_hook(self._pre))
                self._handles.append(module.register_forward_hook(self._post))

    def _pre(self, module, args) -> None:
        self._start.append(float(self.counter.get_total_flops()))

    def _post(self, module, args, output) -> None:
        seen = float(self.counter.get_total_flops()) - self._start.pop()
        cin, cout = int(args[0].features.shape[1]), int(output.features.shape[1])
        kernel = 1
        for k in module.kernel_size:
            kernel *= int(k)
        bound = 2.0 * output.features.shape[0] * kernel * cin * cout
        self.bound_all += bound
        self.convs += 1
        if seen > 0:
            self.counted += seen
        else:
            self.estimated += bound

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _grid_sample_formulas() -> dict:
    import torch
    aten = torch.ops.aten

    def forward(input_shape, grid_shape, *args, out_shape=None, **kwargs) -> int:
        # bilinear: 4 taps x (multiply + add) per channel per sampled point
        n, c = input_shape[0], input_shape[1]
        points = 1
        for s in grid_shape[1:-1]:
            points *= s
        return 8 * n * c * points

    def backward(grad_shape, input_shape, grid_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * forward(input_shape, grid_shape)

    formulas = {}
    for name in ("grid_sampler_2d", "grid_sampler_3d"):
        if hasattr(aten, name):
            formulas[getattr(aten, name)] = forward
        if hasattr(aten, name + "_backward"):
            formulas[getattr(aten, name + "_backward")] = backward
    return formulas


# --- one step ------------------------------------------------------------------------------
def sparse_encoder_in_fp32(model) -> None:
    """Run the spconv middle encoder outside autocast, on fp32 features.

    spconv's CPU kernels have no bfloat16 path (``torch_tensor_to_tv`` raises
    ``KeyError: torch.bfloat16`` when autocast hands them bf16 features), so on CPU the
    bf16 case keeps the sparse encoder in fp32 and autocasts the rest. Applied on the
    instance; the model code is unchanged."""
    import torch
    encoder = model.lidar_encoder.middle_encoder
    original = encoder.forward

    @functools.wraps(original)
    def forward(features, *args, **kwargs):
        with torch.autocast(_device().type, enabled=False):
            return original(features.float(), *args, **kwargs)
    encoder.forward = forward


def _step_fn(model, batch, train: bool, dtype: str, meter: StageMeter) -> Callable[[], dict]:
    import torch

    def step() -> dict:
        meter.reset()
        _sync()
        start = time.perf_counter()
        if train:
            for p in model.parameters():
                p.grad = None
            with _autocast(dtype):
                data = model.data_preprocessor(batch, True)
                losses = model(**data, mode="loss")
                total = sum(v.float() for k, v in losses.items() if "loss" in k)
            with meter.stage("backward"):
                total.backward()
        else:
            with torch.no_grad(), _autocast(dtype):
                data = model.data_preprocessor(batch, False)
                model(**data, mode="predict")
        _sync()
        return {"total": time.perf_counter() - start, "inputs": data["inputs"]}
    return step


def count_flops(step: Callable[[], dict], model, meter: StageMeter) -> dict:
    """One untimed step under FlopCounterMode: FLOPs per stage (forward), and totals."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_grid_sample_formulas())
    sparse = SparseConvFlops(counter)
    sparse.install(model)
    meter.counter = counter
    try:
        with counter:
            out = step()
    finally:
        meter.counter = None
        sparse.remove()
    counted = dict(meter.flops)
    total_counted = float(counter.get_total_flops())
    per_stage = dict(counted)
    per_stage["other"] = max(total_counted - sum(counted.values()), 0.0)
    # Sparse convs the counter could not see (none on CPU): their stage is the sparse
    # encoder; their backward is taken as 2 x forward.
    per_stage["sparse_encoder"] = per_stage.get("sparse_encoder", 0.0) + sparse.estimated
    train = "backward" in meter.times
    if train:
        per_stage["backward"] = per_stage.get("backward", 0.0) + 2.0 * sparse.estimated
    total = sum(per_stage.values())
    return {"per_stage": per_stage, "counted_total": total_counted, "total": total,
            "sparse_conv_counted": sparse.counted, "sparse_conv_estimated": sparse.estimated,
            "sparse_conv_bound_all": sparse.bound_all, "sparse_convs": sparse.convs,
            "backward_sparse_estimate": 2.0 * sparse.estimated if train else 0.0,
            "inputs": out["inputs"]}


# --- matmul peak ---------------------------------------------------------------------------
def _best_seconds(run: Callable[[], Any], seconds: float) -> float:
    """Fastest of >= 3 timed calls of `run` within ~`seconds` (after one warm-up)."""
    run()
    _sync()
    best, deadline, runs = float("inf"), time.perf_counter() + seconds, 0
    while runs < 3 or (time.perf_counter() < deadline and runs < 50):
        start = time.perf_counter()
        run()
        _sync()
        best = min(best, time.perf_counter() - start)
        runs += 1
    return best


def matmul_peak(size: int, dtype_name: str, seconds: float = 1.5) -> dict:
    """FLOP/s of a square ``size`` GEMM in this dtype, two ways.

    ``matmul``: ``torch.matmul`` (BLAS). ``conv1x1``: the same GEMM as a 1 x 1 convolution,
    which on CPU goes through oneDNN; oneDNN's fp32 GEMM can be much faster than the BLAS
    behind ``torch.matmul``, and the model's convolutions run on oneDNN, so ``best`` (the
    larger) is the ceiling the %peak columns divide by.
    """
    import torch
    import torch.nn.functional as F
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(_device(), dtype)
    b = torch.randn(size, size, generator=gen).to(_device(), dtype)
    flop = 2.0 * size ** 3
    with torch.no_grad():
        result = {"matmul": flop / _best_seconds(lambda: torch.matmul(a, b), seconds)}
        x, w = a.view(1, size, size, 1), b.view(size, size, 1, 1)
        result["conv1x1"] = flop / _best_seconds(lambda: F.conv2d(x, w), seconds)
    result["best"] = max(result["matmul"], result["conv1x1"])
    return result


def _peaks(scale: str) -> dict:
    """GEMM ceilings: ``fp32`` / ``bf16`` are the best FLOP/s; ``*_by`` the two ways."""
    size = MATMUL_SIZE[scale] * (4 if _device().type == "cuda" else 1)
    peaks: dict = {"size": size}
    for dtype in ("fp32", "bf16"):
        measured = matmul_peak(size, dtype)
        peaks[dtype] = measured["best"]
        peaks[f"{dtype}_by"] = {k: v for k, v in measured.items() if k != "best"}
    return peaks


def _rss(field: str) -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# --- cases ---------------------------------------------------------------------------------
def _reference_child() -> bool:
    """True in the harness's child for the ``reference`` side (``benchmark.py _child GROUP
    CASE reference ...``): these cases have no reference, and the harness runs ``setup``
    before it looks, so the child returns at once instead of building the model."""
    return len(sys.argv) > 4 and sys.argv[1] == "_child" and sys.argv[4] == "reference"


def _detector_case(train: bool, dtype: str) -> Callable[[str], Prepared]:
    def setup(scale: str) -> Prepared:
        import torch

        if _reference_child():
            return Prepared(ours=lambda: None, reference=None)
        cfg = _config(scale)
        root = dataset_root(scale)
        batch = _batch(cfg, root, train)
        model = _model(cfg)
        model.train(train)
        if dtype == "bf16" and _device().type == "cpu":
            sparse_encoder_in_fp32(model)
        meter = StageMeter()
        attach(meter, model)
        step = _step_fn(model, batch, train, dtype, meter)
        flops = count_flops(step, model, meter)  # also the warm-up of lazy initialisation
        inputs = flops.pop("inputs")
        params = sum(p.numel() for p in model.parameters())
        stage_params = {s: sum(p.numel() for m in mods if m is not None for p in m.parameters())
                        for s, mods in stage_modules(model).items()}
        imgs = inputs.get("imgs")
        points = inputs["points"]
        info = {
            "config": str(CONFIGS[scale].relative_to(ROOT)), "mode": "train" if train
            else "inference", "dtype": dtype, "device": str(_device()),
            "threads": torch.get_num_threads(), "params": params, "params_per_stage": stage_params,
            "input": {"points": int(sum(p.shape[0] for p in points)),
                      "voxels": int(inputs["voxels"]["voxels"].shape[0]),
                      "images": list(imgs.shape) if imgs is not None else None,
                      "sweeps": SWEEPS[scale]},
            "flops": {k: v for k, v in flops.items() if k != "per_stage"},
        }
        prepared = Prepared(ours=lambda: None, notes="")
        # The GEMM ceiling is measured here, in the same process as the timed runs but
        # outside them (inside, its large products would be timed as part of every step).
        info["matmul_peak"] = _peaks(scale)

        def run() -> None:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            result = step()
            peak = info["matmul_peak"][dtype]
            stages = []
            for name in STAGES:
                seconds = (result["total"] - sum(meter.times.values()) if name == "other"
                           else meter.times.get(name))
                if seconds is None:
                    continue
                stage_flops = flops["per_stage"].get(name, 0.0)
                rate = stage_flops / seconds if seconds > 0 else 0.0
                stages.append({"stage": name, "time_s": seconds, "flops": stage_flops,
                               "flops_per_s": rate, "fraction_of_peak": rate / peak})
            rate = flops["total"] / result["total"]
            info.update(stages=stages, total={
                "time_s": result["total"], "flops": flops["total"], "flops_per_s": rate,
                "fraction_of_peak": rate / peak},
                vm_hwm_mib=_rss("VmHWM"),
                cuda_peak_mib=(torch.cuda.max_memory_allocated() / 2 ** 20
                               if torch.cuda.is_available() else None))
            prepared.notes = json.dumps(info)
        prepared.ours = run
        prepared._keep = (model, batch, meter)
        return prepared
    return setup


def _matmul_case(scale: str) -> Prepared:
    prepared = Prepared(ours=lambda: None)

    def run() -> None:
        prepared.notes = json.dumps({"matmul_peak": _peaks(scale)})
    prepared.ours = run
    return prepared


_PAPER = "DeepInteraction++ Swin-T, 1 sample: 10 sweeps, 6 x 448 x 800, 1440^2 x 41 grid"
CASES = [
    BenchCase("di_pp_inference_fp32", f"{_PAPER}; inference (predict), fp32",
              _detector_case(False, "fp32"), repeats=1, tags=["driving"]),
    BenchCase("di_pp_inference_bf16", f"{_PAPER}; inference (predict), bf16 autocast",
              _detector_case(False, "bf16"), repeats=1, tags=["driving"]),
    BenchCase("di_pp_train_step_fp32", f"{_PAPER}; forward + backward (loss), fp32",
              _detector_case(True, "fp32"), repeats=1, tags=["driving"]),
    BenchCase("matmul_peak", "square GEMM (torch.matmul, oneDNN 1x1 conv), fp32 and bf16: FLOP/s peak",
              _matmul_case, repeats=1, tags=["driving"]),
]


# --- report --------------------------------------------------------------------------------
def _notes(row: dict) -> Optional[dict]:
    try:
        return json.loads(row["ours"].get("notes") or "")
    except (KeyError, ValueError):
        return None


def _peak_text(peak: dict, dtype: str) -> str:
    """'384.2 (matmul 229.0, conv1x1 384.2)' in GFLOP/s; older results have no split."""
    ways = peak.get(f"{dtype}_by")
    text = f"{peak[dtype] / 1e9:.1f}"
    if ways:
        text += " (" + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in ways.items()) + ")"
    return text


def format_report(result: dict) -> str:
    """Per-stage table of a `driving` group result (latency, GFLOP, % of matmul peak)."""
    notes = {row["case"]: _notes(row) for row in result.get("rows", [])}
    cases = [("di_pp_inference_fp32", "fp32"), ("di_pp_inference_bf16", "bf16"),
             ("di_pp_train_step_fp32", "train fp32")]
    present = [(c, label) for c, label in cases if notes.get(c) and notes[c].get("stages")]
    if not present:
        return ""
    by_case = {c: {s["stage"]: s for s in notes[c]["stages"]} for c, _ in present}
    header = ["stage"]
    for case, label in present:
        header += [f"{label} ms", f"{label} GFLOP", f"{label} %peak"]
    lines = [header]
    for stage in [*STAGES, "total"]:
        line, seen = [stage], False
        for case, _ in present:
            entry = (notes[case]["total"] if stage == "total" else by_case[case].get(stage))
            if entry is None:
                line += ["-", "-", "-"]
                continue
            seen = True
            line += [f"{entry['time_s'] * 1e3:.0f}", f"{entry['flops'] / 1e9:.1f}",
                     f"{100 * entry['fraction_of_peak']:.1f}"]
        if seen:
            lines.append(line)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = [" | ".join(str(c).rjust(w) if i else str(c).ljust(w)
                      for i, (c, w) in enumerate(zip(line, widths))) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    first = notes[present[0][0]]
    out.append("")
    out.append(f"model: {first['config']}, {first['params'] / 1e6:.2f} M parameters ("
               + ", ".join(f"{s} {n / 1e6:.2f} M" for s, n in first["params_per_stage"].items())
               + ")")
    inp = first["input"]
    out.append(f"input: {inp['points']} points ({inp['sweeps']} sweeps), {inp['voxels']} voxels, "
               f"images {inp['images']}; device {first['device']}, {first['threads']} threads")
    for case, label in present:
        n, row = notes[case], next(r for r in result["rows"] if r["case"] == case)
        peak = n["matmul_peak"]
        cuda = (f", CUDA max allocated {n['cuda_peak_mib']:.0f} MiB"
                if n.get("cuda_peak_mib") is not None else "")
        out.append(f"{label}: peak RSS {n['vm_hwm_mib']:.0f} MiB (timed run +"
                   f"{row['ours'].get('peak_mib', float('nan')):.0f} MiB){cuda}; GEMM peak "
                   f"{peak['size']}^2 fp32 {_peak_text(peak, 'fp32')} / bf16 "
                   f"{_peak_text(peak, 'bf16')} GFLOP/s (same process)")
    f = first["flops"]
    out.append(f"FLOPs: FlopCounterMode (matmul/conv/attention, 2 per MAC; elementwise not "
               f"counted); {f['sparse_convs']} spconv convs: "
               f"{f['sparse_conv_counted'] / 1e9:.1f} GFLOP seen by the counter (spconv's CPU "
               f"torch.mm), {f['sparse_conv_estimated'] / 1e9:.1f} GFLOP estimated (bound "
               f"sites x kernel volume, all convs: {f['sparse_conv_bound_all'] / 1e9:.1f}); "
               f"grid_sample 8 FLOP per channel-point (custom formula).")
    train = notes.get("di_pp_train_step_fp32")
    if train and train.get("flops", {}).get("backward_sparse_estimate"):
        out.append(f"train backward includes 2 x the estimated spconv forward = "
                   f"{train['flops']['backward_sparse_estimate'] / 1e9:.1f} GFLOP.")
    out.append("'other' = total minus the stages; %peak = stage FLOP/s / GEMM peak of its "
               "dtype (the faster of torch.matmul and a oneDNN 1x1 conv, measured in the same "
               "process; under CPU contention it can exceed 100).")
    return "\n".join(out)


def report(result: dict) -> str:
    """What the runner prints after its table for this group: :func:`format_report` under
    a heading ("" when there is nothing to add)."""
    text = format_report(result)
    return "per stage (driving):\n" + text if text else ""
