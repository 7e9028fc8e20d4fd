"""Class maps as Cloud Optimized GeoTIFFs carrying the input's CRS, transform and nodata.

A map is first written as a tiled GTiff with internal overviews under a hidden
temporary name, then copied by GDAL's COG driver to a second temporary name, which is
renamed onto the final path (:mod:`interlace.core.engine.atomic_files`). Any exception
on the way removes both temporaries, so no half-written map ever appears under its final
name; the map gets the umask's permissions. The class colour
table travels with the map (GDAL palette), so GIS tools show the legend colours.

:class:`ClassMapCogWriter` takes the map row block by row block (what
``SlidingWindowMosaic`` emits), so a scene never has to sit in memory whole.
:class:`GeoTiffMapWriter` is the ``tools/infer.py`` writer (registered in INFERENCE_IO);
its ``write_stream`` takes a scene window by window from the batch-inference engine
(with ``SceneWindowReader``): the windows' class scores are blended with
``SlidingWindowMosaic`` and arg-maxed strip by strip into the COG, so memory is
O(classes x window x scene width) whatever the scene height.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling

from interlace.core.engine.atomic_files import atomic_path, temporary_sibling
from interlace.core.engine.batch_inference import StreamingInferenceWriter
from interlace.core.engine.registry import INFERENCE_IO
from interlace.domains.remote_sensing.data.landcover import LANDCOVER_PALETTE, colormap_of

from .sliding_window_mosaic import SlidingWindowMosaic

__all__ = ["ClassMapCogWriter", "write_class_map_cog", "GeoTiffMapWriter", "blend_windows_to_cog",
           "window_scores"]


class ClassMapCogWriter:
    """Write a (height, width) uint8 class map block by block, then publish it as a COG.

    Use as a context manager: leaving the block normally publishes the COG at `path`;
    leaving it by an exception discards everything.

    Args:
        path: final file name.
        crs: CRS (``'EPSG:32632'``, WKT or ``rasterio.crs.CRS``); transform: affine or
            6-tuple of the map's top-left pixel grid.
        nodata: value of pixels without a prediction (255).
        palette: RGB per class (colour table); None writes none.
        blocksize: COG tile size (multiple of 16).
    """

    def __init__(self, path: str, height: int, width: int, crs: Any, transform: Any,
                 nodata: int = 255, palette: Optional[Sequence[Sequence[int]]] = LANDCOVER_PALETTE,
                 blocksize: int = 256, compress: str = "deflate") -> None:
        self.path, self.height, self.width = path, int(height), int(width)
        self.crs = CRS.from_user_input(crs)
        self.transform = transform if isinstance(transform, Affine) else Affine(*tuple(transform)[:6])
        self.nodata, self.palette = nodata, palette
        self.blocksize, self.compress = int(blocksize), compress
        self._tmp_gtiff: Optional[str] = None
        self._dst = None
        self._temporaries = contextlib.ExitStack()

    def __enter__(self) -> "ClassMapCogWriter":
        try:
            self._open()
        except BaseException:
            self._temporaries.close()
            raise
        return self

    def _open(self) -> None:
        self._tmp_gtiff = os.fspath(self._temporaries.enter_context(
            temporary_sibling(self.path, tag="gtiff")))
        block = min(self.blocksize, 256)
        tiled = self.height >= 16 and self.width >= 16
        options = dict(tiled=True, blockxsize=block if self.width >= block else 16 * max(1, self.width // 16),
                       blockysize=block if self.height >= block else 16 * max(1, self.height // 16)) if tiled else {}
        self._dst = rasterio.open(self._tmp_gtiff, "w", driver="GTiff", width=self.width,
                                  height=self.height, count=1, dtype="uint8", crs=self.crs,
                                  transform=self.transform, nodata=self.nodata, **options)
        self._dst.set_band_description(1, "class")
        if self.palette is not None:  # before any pixel: GDAL fixes the photometric tag then
            self._dst.write_colormap(1, colormap_of(self.palette))

    def write_rows(self, row0: int, rows: np.ndarray) -> None:
        """rows: (n, width) class indices for scene rows [row0, row0 + n)."""
        from rasterio.windows import Window
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"expected (n, {self.width}) rows, got {rows.shape}")
        self._dst.write(rows.astype(np.uint8), 1, window=Window(0, row0, self.width, rows.shape[0]))

    def _publish(self) -> None:
        # Overviews by mode keep class values (no averaging of class ids).
        factors = [f for f in (2, 4, 8, 16, 32) if min(self.height, self.width) // f >= 64]
        self._dst.close()
        self._dst = None
        if factors:
            # Reopened: on a dataset still in write mode GDAL's overview builder does not
            # see the colour table and warns about palette bands without a palette.
            with rasterio.open(self._tmp_gtiff, "r+") as gtiff:
                gtiff.build_overviews(factors, Resampling.mode)
        with atomic_path(self.path) as tmp_cog:
            rasterio.shutil.copy(self._tmp_gtiff, os.fspath(tmp_cog), driver="COG",
                                 blocksize=self.blocksize, compress=self.compress,
                                 overviews="IGNORE_EXISTING" if not factors else "AUTO",
                                 overview_resampling="mode", resampling="mode")

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._publish()
        finally:
            try:
                if self._dst is not None:
                    self._dst.close()
                    self._dst = None
            finally:
                self._temporaries.close()  # removes the intermediate GTiff


def write_class_map_cog(path: str, class_map: np.ndarray, crs: Any, transform: Any,
                        nodata: int = 255, palette: Optional[Sequence[Sequence[int]]] = LANDCOVER_PALETTE,
                        blocksize: int = 256) -> str:
    """Write a (H, W) class map as a COG at `path`, atomically (see module docstring)."""
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"class map must be (H, W), got {class_map.shape}")
    with ClassMapCogWriter(path, class_map.shape[0], class_map.shape[1], crs, transform,
                           nodata, palette, blocksize) as writer:
        writer.write_rows(0, class_map)
    return path


def _field(sample: Any, key: str) -> Any:
    if isinstance(sample, dict):
        return sample.get(key)
    return getattr(sample, key, None) if key in sample else None


def _meta(sample: Any, key: str) -> Any:
    if isinstance(sample, dict):
        return sample.get(key, (sample.get("metainfo") or {}).get(key))
    return sample.metainfo.get(key) if hasattr(sample, "metainfo") else None


def _array(value: Any) -> np.ndarray:
    """A tensor / PixelData / array as a numpy array on the CPU."""
    value = getattr(value, "data", value)
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def window_scores(sample: Any, num_classes: int, score_key: Optional[str] = None,
                  where: str = "") -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Per-class scores (K, h, w) float32 of one window's prediction, and its
    ``input_valid`` (h, w) bool (None when the sample has none).

    Scores are `score_key` if given, else the first of ``seg_probs``, ``seg_logits``,
    or a one-hot of ``pred_sem_seg`` (K = `num_classes`) — a vote, for models that
    give only labels.
    """
    keys = (score_key,) if score_key else ("seg_probs", "seg_logits")
    scores = None
    for key in keys:
        if _field(sample, key) is not None:
            scores = _array(_field(sample, key)).astype(np.float32)
            break
    if scores is None and not score_key and _field(sample, "pred_sem_seg") is not None:
        pred = _array(_field(sample, "pred_sem_seg")).astype(np.int64)
        pred = pred[0] if pred.ndim == 3 else pred
        if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
            raise ValueError(f"{where}pred_sem_seg holds class {int(pred.max())} outside "
                             f"[0, {num_classes}); set the writer's num_classes")
        scores = (np.arange(num_classes)[:, None, None] == pred[None]).astype(np.float32)
    if scores is None:
        wanted = score_key or "seg_probs, seg_logits or pred_sem_seg"
        raise ValueError(f"{where}model output has no {wanted}")
    if scores.ndim != 3:
        raise ValueError(f"{where}class scores must be (K, h, w), got {scores.shape}")
    valid = _field(sample, "input_valid")
    return scores, (None if valid is None else _array(valid).astype(bool))


def _samples(outputs: Any, where: str) -> Any:
    """The single sample of a ``test_step`` output (a list of one)."""
    samples = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    if len(samples) != 1:
        raise ValueError(f"{where}GeoTiffMapWriter writes one map per input, the model "
                         f"returned {len(samples)} samples")
    return samples[0]


def blend_windows_to_cog(windows: Iterable[tuple[Any, np.ndarray, Optional[np.ndarray]]],
                         height: int, width: int, crs: Any, transform: Any, out_path: str,
                         nodata: int = 255,
                         palette: Optional[Sequence[Sequence[int]]] = LANDCOVER_PALETTE,
                         blocksize: int = 256) -> int:
    """Blend (window, scores (K, h, w), valid (h, w) or None) triples, row-major, into a
    (height, width) class-map COG at `out_path`; return the number of windows.

    Validity is blended as one more channel: a pixel's windows all see the same input,
    so its blended validity is exactly 0 or 1, and invalid pixels become `nodata`.
    """
    with ClassMapCogWriter(out_path, height, width, crs, transform, nodata, palette,
                           blocksize) as cog:
        def sink(row0: int, block: np.ndarray) -> None:
            classes = block[:-1].argmax(0).astype(np.uint8)
            classes[block[-1] < 0.5] = nodata
            cog.write_rows(row0, classes)

        mosaic: Optional[SlidingWindowMosaic] = None
        count = 0
        for window, scores, valid in windows:
            if mosaic is None:
                if nodata < scores.shape[0]:
                    raise ValueError(f"nodata {nodata} is a class index (the model has "
                                     f"{scores.shape[0]} classes); pick a value >= that")
                mosaic = SlidingWindowMosaic(height, width, scores.shape[0] + 1, sink)
            h, w = int(window.height), int(window.width)
            if scores.shape[1:] != (h, w):
                raise ValueError(f"scores of window {window} are {scores.shape[1:]}, not "
                                 f"the window's ({h}, {w})")
            valid_plane = np.ones((1, h, w), np.float32) if valid is None else \
                np.asarray(valid, np.float32).reshape(1, h, w)
            mosaic.add(int(window.row_off), int(window.col_off),
                       np.concatenate([scores, valid_plane], axis=0))
            count += 1
        if mosaic is None:
            raise ValueError("no window to write")
        mosaic.finish()
    return count


@INFERENCE_IO.register_module()
class GeoTiffMapWriter(StreamingInferenceWriter):
    """Writes the predicted class map of one input as ``<input stem><suffix>`` (a COG).

    ``write`` takes ``model.test_step`` outputs for a whole tile: one sample (data
    element or dict) with ``pred_sem_seg`` (H, W) (or ``seg_logits`` (C, H, W),
    arg-maxed) and metainfo ``crs`` and ``transform`` (from ``collate_time_series``).

    ``write_stream`` takes the engine's ``(window, outputs)`` stream and the reader's
    ``describe`` (``height``, ``width``, ``crs``, ``transform``, optional ``nodata``):
    each window's class scores (``seg_probs`` (K, h, w), else ``seg_logits``, else a
    one-hot of ``pred_sem_seg``) are blended over the overlaps with
    :class:`SlidingWindowMosaic`, so seams fade in instead of jumping; pixels whose
    ``input_valid`` is False are written as nodata.

    Args:
        suffix: output name suffix after the input's stem.
        nodata: class-map nodata when the scene gives none (255).
        palette: RGB per class, written as the GDAL colour table.
        num_classes: classes of a ``pred_sem_seg``-only model (default: palette size).
        score_key: use this output field as the scores instead of the automatic choice.
    """

    def __init__(self, suffix: str = "_classmap.tif", nodata: int = 255,
                 palette: Optional[Sequence[Sequence[int]]] = LANDCOVER_PALETTE,
                 blocksize: int = 256, num_classes: Optional[int] = None,
                 score_key: Optional[str] = None) -> None:
        self.suffix, self.nodata, self.palette, self.blocksize = suffix, nodata, palette, blocksize
        self.num_classes = num_classes or (len(palette) if palette is not None else None)
        self.score_key = score_key

    def output_name(self, path: str) -> str:
        return os.path.splitext(os.path.basename(path))[0] + self.suffix

    def write(self, outputs: Any, input_path: str, out_path: str) -> None:
        sample = _samples(outputs, f"{input_path}: ")
        pred = _field(sample, "pred_sem_seg")
        if pred is None and _field(sample, "seg_logits") is not None:
            pred = _array(_field(sample, "seg_logits")).argmax(0)
        if pred is None:
            raise ValueError(f"{input_path}: model output has no pred_sem_seg or seg_logits")
        pred = _array(pred)
        pred = pred[0] if pred.ndim == 3 else pred
        crs, transform = _meta(sample, "crs"), _meta(sample, "transform")
        if crs is None or transform is None:
            raise ValueError(f"{input_path}: model output lacks metainfo crs/transform; keep "
                             "the data samples' metainfo in the model's predictions")
        write_class_map_cog(out_path, pred, crs, transform, self.nodata, self.palette, self.blocksize)

    def _scene_nodata(self, scene: dict, input_path: str) -> int:
        nodata = scene.get("nodata")
        nodata = self.nodata if nodata is None else nodata
        if not float(nodata).is_integer() or not 0 <= int(nodata) <= 255:
            raise ValueError(f"{input_path}: nodata {nodata} does not fit a uint8 class map")
        return int(nodata)

    def write_stream(self, stream: Iterable[tuple[Any, Any]], scene: dict, input_path: str,
                     out_path: str) -> None:
        missing = [k for k in ("height", "width", "crs", "transform") if scene.get(k) is None]
        if missing:
            raise ValueError(f"{input_path}: the reader's describe() lacks {missing}; "
                             "GeoTiffMapWriter needs the scene's size, crs and transform")
        where = f"{input_path}: "
        num_classes = self.num_classes or 256

        def triples() -> Iterator[tuple[Any, np.ndarray, Optional[np.ndarray]]]:
            for window, outputs in stream:
                scores, valid = window_scores(_samples(outputs, where), num_classes,
                                              self.score_key, where)
                yield window, scores, valid

        blend_windows_to_cog(triples(), scene["height"], scene["width"], scene["crs"],
                             scene["transform"], out_path, self._scene_nodata(scene, input_path),
                             self.palette, self.blocksize)

    def write_windows(self, windows: Iterable[tuple[Any, np.ndarray]], height: int, width: int,
                      crs: Any, transform: Any, num_classes: int, out_path: str) -> None:
        """Blend (window, logits (C, h, w)) pairs in row-major order into one COG."""
        blend_windows_to_cog(((w, np.asarray(logits, np.float32), None) for w, logits in windows),
                             height, width, crs, transform, out_path, self.nodata,
                             self.palette, self.blocksize)
