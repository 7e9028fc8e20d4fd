"""SkySense benchmarks (`tools/analysis_tools/benchmark.py remote_sensing`): training-step
throughput and memory, and scene inference speed and memory at two scene sizes.

Training steps (full scale): the tiny SkySense configs of configs/remote_sensing/ (conv
backbones, 32 channels, 2 temporal layers), batch 8 chips of 64 x 64 px, 12 dates of
Sentinel-2 (10 bands) and 12 of Sentinel-1 (2 bands), one forward + backward + AdamW
step on a batch already in memory (``collate_time_series`` layout, random values, no file
reading). ``pretrain_step`` is the teacher-student multi-granularity contrastive step
(48 px views, 6 dates per view, EMA teacher update included); ``segment_train_step`` the
segmentor's cross-entropy step. Chips/s = 8 / time.

Scene inference (full scale): a 2000 x 2000 px (400 km² at 10 m) and a 6000 x 6000 px
(3600 km²) tile (sizes and dates: see ``scene_settings``) are generated once into a
cache folder (INTERLACE_BENCH_CACHE, default the system temp folder) (parcels of 6 land-cover classes,
piecewise constant, so the rasters compress well and reading costs less than for real,
noisy scenes), with 12 dates per stream; the dates after the first two are
symbolic links to those two files (same content, but every date is read and decoded).
``ours`` is the streamed map of one tile: ``SceneWindowReader.iter_windows`` (256 px
windows, 32 px overlap) -> ``model.test_step`` of the tiny segmentor (random weights:
speed does not depend on them) -> ``SlidingWindowMosaic`` blending -> a class-map COG,
through ``BatchInferenceEngine``'s streaming path when the reader can describe its scene,
else the same loop written out here (``blend_windows_to_cog``); the notes say which.
km²/min = area / (time / 60); the peak memory of the two sizes should be nearly equal.

Smoke scale: batch 2, 4 dates, 32 px chips; scenes of 64² and 128² px with 2 dates,
64 px windows with 16 px overlap.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .common import BenchCase, Prepared

ROOT = Path(__file__).resolve().parents[3]  # the source checkout: configs/ is not installed
PRETRAIN_CONFIG = ROOT / "configs/remote_sensing/skysense_pretrain_synthetic_tiny.py"
SEGMENT_CONFIG = ROOT / "configs/remote_sensing/skysense_segment_synthetic_tiny.py"
PIXEL_M = 10.0
SCENE_WINDOW = {"full": 256, "smoke": 64}
SCENE_OVERLAP = {"full": 32, "smoke": 16}
NUM_CLASSES = 6
_CACHE_VERSION = 1


def scene_settings(scale: str) -> tuple[tuple[int, int], int]:
    """((small side, large side) in px, dates per stream) of the scene cases.

    Full scale defaults to 2000 / 6000 px with 12 dates; INTERLACE_RS_SCENE_SIZES
    (e.g. ``1000,3000``) and INTERLACE_RS_SCENE_DATES override them, for CPUs on which
    a 3600 km² map would take hours (the report must then say which sizes ran).
    """
    if scale == "smoke":
        return (64, 128), 2
    sizes = os.environ.get("INTERLACE_RS_SCENE_SIZES", "2000,6000").split(",")
    small, large = (int(v) for v in sizes)
    return (small, large), int(os.environ.get("INTERLACE_RS_SCENE_DATES", "12"))


def _sizes(scale: str) -> dict:
    if scale == "smoke":
        return dict(batch=2, dates=4, chip=32, crop=24, view_dates=2)
    return dict(batch=8, dates=12, chip=64, crop=48, view_dates=6)


def _init() -> None:
    import logging

    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    import interlace.domains.remote_sensing.data  # noqa: F401  registers dataset and IO
    import interlace.domains.remote_sensing.evaluation  # noqa: F401  registers the writer
    import interlace.domains.remote_sensing.models  # noqa: F401  registers the models
    init_default_scope("interlace")
    MMLogger.get_current_instance().setLevel(logging.WARNING)


def _build(config: Path, **overrides):
    from mmengine.config import Config

    from interlace.core.engine.registry import MODELS
    _init()
    cfg = Config.fromfile(str(config))
    torch.manual_seed(0)
    return MODELS.build(dict(cfg.model, **overrides)), cfg


def _batch(scale: str) -> dict:
    """A collated batch (``collate_time_series`` layout) of random chips."""
    from mmengine.structures import BaseDataElement
    s = _sizes(scale)
    g = torch.Generator().manual_seed(0)
    b, t, c = s["batch"], s["dates"], s["chip"]
    doy = torch.linspace(15, 345, t).round().long().expand(b, t).contiguous()
    inputs = dict(s2=torch.randn(b, t, 10, c, c, generator=g), s2_doy=doy,
                  s2_valid=torch.rand(b, t, c, c, generator=g) > 0.2,
                  s1=torch.randn(b, t, 2, c, c, generator=g), s1_doy=doy + 2,
                  s1_valid=torch.ones(b, t, c, c, dtype=torch.bool),
                  modality_flags=torch.tensor([[True, True, False]]).expand(b, 3).contiguous(),
                  latlon=torch.tensor([[45.4, 9.3]]).expand(b, 2).contiguous())
    labels = torch.randint(0, NUM_CLASSES, (b, c, c), generator=g)
    return dict(inputs=inputs, data_samples=[BaseDataElement(gt_sem_seg=lab) for lab in labels])


def _train_step_case(kind: str) -> Callable[[str], Prepared]:
    def setup(scale: str) -> Prepared:
        s = _sizes(scale)
        if kind == "pretrain":
            model, cfg = _build(PRETRAIN_CONFIG, crop_size=s["crop"],
                                num_view_dates=s["view_dates"])
            model.update_teacher(0.0)
        else:
            model, cfg = _build(SEGMENT_CONFIG)
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=1e-3, weight_decay=0.05)
        batch = _batch(scale)

        def step() -> float:
            losses = model(**model.data_preprocessor(batch, True), mode="loss")
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if kind == "pretrain":
                model.update_teacher(0.996)
            return float(loss.detach())

        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return Prepared(ours=step, notes=(
            f"chips/s = {s['batch']} / time; batch {s['batch']}, {s['dates']} dates, 10 + 2 "
            f"bands, {s['chip']} x {s['chip']} px, {params / 1e6:.2f} M trainable parameters"))
    return setup


# -- scenes ----------------------------------------------------------------------------

def _scene_root(size: int, dates: int) -> Path:
    base = Path(os.environ.get("INTERLACE_BENCH_CACHE", tempfile.gettempdir()))
    return base / "interlace_rs_bench_scenes" / f"v{_CACHE_VERSION}_{size}px_{dates}d"


def _write_strips(path: Path, size: int, names: list[str], dtype, nodata, crs: str, transform,
                  strip: Callable[[np.ndarray], np.ndarray], label: np.ndarray) -> None:
    """Write a (bands, size, size) raster 512 rows at a time: strip(label rows) -> data;
    band descriptions `names` (the dataset's catalog finds bands by them)."""
    import rasterio
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=len(names),
                       dtype=dtype, crs=crs, transform=transform, nodata=nodata,
                       compress="lzw", tiled=True, blockxsize=256, blockysize=256) as dst:
        for index, name in enumerate(names):
            dst.set_band_description(index + 1, name)
        for row in range(0, size, 512):
            rows = label[row:row + 512]
            dst.write(strip(rows), window=rasterio.windows.Window(0, row, size, rows.shape[0]))


def make_scene(size: int, dates: int) -> Path:
    """A cached synthetic tile of `size`^2 px in SentinelTimeSeriesDataset's layout."""
    from affine import Affine

    from interlace.domains.remote_sensing.data import S1_BANDS, S1_NODATA, S2_BANDS
    root = _scene_root(size, dates)
    if (root / "done").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
    rng = np.random.default_rng(size)
    parcel = 40  # 400 m fields
    cells = -(-size // parcel)
    label = np.repeat(np.repeat(rng.integers(0, NUM_CLASSES, (cells, cells)).astype(np.uint8),
                                parcel, 0), parcel, 1)[:size, :size]
    crs, transform = "EPSG:32632", Affine(PIXEL_M, 0, 500000, 0, -PIXEL_M, 5030000)
    for folder in ("s2", "s1", "labels"):
        (tmp / folder).mkdir()
    _write_strips(tmp / "labels/LABEL_BENCH.tif", size, ["landcover"], "uint8", 255, crs, transform,
                  lambda rows: rows[None], label)
    # Per class and per distinct date: 10 reflectances (x 10000) and VV / VH in dB.
    green = rng.uniform(0.0, 1.0, (2, NUM_CLASSES))
    soil, veg = np.linspace(800, 3000, 10), np.array([300, 700, 400, 1000, 2500, 3200,
                                                      3800, 4000, 2000, 1000], float)
    for k in range(min(dates, 2)):
        s2_lut = np.round(green[k][:, None] * veg + (1 - green[k][:, None]) * soil).astype(np.uint16)
        s2_lut = np.concatenate([s2_lut, np.full((NUM_CLASSES, 1), 4, np.uint16)], 1)  # SCL 4
        s1_lut = np.stack([-15 + 8 * green[k], -22 + 10 * green[k]], 1).astype(np.float32)
        _write_strips(tmp / f"s2/S2_BENCH_{_date(k)}.tif", size, [*S2_BANDS, "SCL"], "uint16", 0, crs,
                      transform, lambda rows, lut=s2_lut: np.moveaxis(lut[rows], -1, 0), label)
        _write_strips(tmp / f"s1/S1_BENCH_{_date(k, 2)}.tif", size, list(S1_BANDS), "float32", S1_NODATA,
                      crs, transform, lambda rows, lut=s1_lut: np.moveaxis(lut[rows], -1, 0),
                      label)
    for k in range(2, dates):
        os.symlink(f"S2_BENCH_{_date(k % 2)}.tif", tmp / f"s2/S2_BENCH_{_date(k)}.tif")
        os.symlink(f"S1_BENCH_{_date(k % 2, 2)}.tif", tmp / f"s1/S1_BENCH_{_date(k, 2)}.tif")
    (tmp / "done").write_text("ok")
    try:
        os.replace(tmp, root)
    except OSError:  # another process published it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _date(k: int, offset: int = 0) -> str:
    import datetime as dt
    return (dt.date(2021, 1, 15) + dt.timedelta(days=30 * k + offset)).strftime("%Y%m%d")


def _scene_case(index: int) -> Callable[[str], Prepared]:
    def setup(scale: str) -> Prepared:
        from interlace.core.engine.batch_inference import BatchInferenceEngine
        sizes, dates = scene_settings(scale)
        size = sizes[index]
        model, _ = _build(SEGMENT_CONFIG)
        model.eval()
        root = make_scene(size, dates)
        from interlace.domains.remote_sensing.data import SceneWindowReader
        from interlace.domains.remote_sensing.evaluation import GeoTiffMapWriter
        reader = SceneWindowReader(str(root), window=SCENE_WINDOW[scale],
                                   overlap=SCENE_OVERLAP[scale],
                                   dataset=dict(modalities=dict(hr=None), band_stats=None))
        writer = GeoTiffMapWriter(num_classes=NUM_CLASSES)
        label = str(root / "labels/LABEL_BENCH.tif")
        out_dir = Path(tempfile.mkdtemp(prefix="interlace_rs_bench_map."))
        engine_ready = callable(getattr(reader, "describe", None))

        def run_engine() -> None:
            for old in out_dir.glob("*.tif"):
                old.unlink()  # the engine skips outputs that exist
            engine = BatchInferenceEngine(model, reader, writer, str(out_dir),
                                          show_progress=False, streaming=True)
            summary = engine.run([label])
            if summary.written != 1:
                raise RuntimeError(f"scene inference failed: {summary.failures}")

        def run_direct() -> None:
            from interlace.domains.remote_sensing.evaluation.geotiff_map_writer import (
                blend_windows_to_cog, window_scores)
            tile = reader.tile_of(label)
            grid = reader.dataset.grids[tile]

            def windows():
                with torch.no_grad():
                    for window, batch in reader.iter_windows(label):
                        scores, valid = window_scores(model.test_step(batch)[0], NUM_CLASSES)
                        yield window, scores, valid
            blend_windows_to_cog(windows(), grid.height, grid.width, grid.crs, grid.transform,
                                 str(out_dir / "LABEL_BENCH_classmap.tif"))

        km2 = size * size * PIXEL_M ** 2 / 1e6
        path = ("BatchInferenceEngine streaming (SceneWindowReader.describe/iter_windows -> "
                "GeoTiffMapWriter.write_stream)" if engine_ready else
                "direct loop: SceneWindowReader.iter_windows -> test_step -> "
                "blend_windows_to_cog (the reader has no describe() yet)")
        return Prepared(ours=run_engine if engine_ready else run_direct, notes=(
            f"km²/min = {km2:g} / (time / 60); {size} x {size} px = {km2:g} km² at 10 m, "
            f"{dates} dates S2 + S1, {SCENE_WINDOW[scale]} px windows, {SCENE_OVERLAP[scale]} px "
            f"overlap, tiny segmentor; {path}"))
    return setup


CASES = [
    BenchCase("pretrain_step", "SkySense pre-training step (tiny config, contrastive + EMA), "
              "batch 8, 12 dates, 10 + 2 bands, 64 x 64 px", _train_step_case("pretrain"),
              repeats=3, tags=["remote_sensing"]),
    BenchCase("segment_train_step", "SkySense segmentor training step (tiny config), batch 8, "
              "12 dates, 10 + 2 bands, 64 x 64 px", _train_step_case("segment"), repeats=3,
              tags=["remote_sensing"]),
    BenchCase("scene_inference_small", "streamed class map of the smaller tile (2000 x 2000 px "
              "= 400 km² unless INTERLACE_RS_SCENE_SIZES says otherwise)", _scene_case(0),
              repeats=1, tags=["remote_sensing"]),
    BenchCase("scene_inference_large", "streamed class map of the larger tile (6000 x 6000 px "
              "= 3600 km² unless INTERLACE_RS_SCENE_SIZES says otherwise)", _scene_case(1),
              repeats=1, tags=["remote_sensing"]),
]
