"""The restricted unpickler: data pickles load, pickles that would run code are refused
before anything runs, and every reader of info files goes through it."""
from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest

from interlace.core.engine.checkpoint import CheckpointError
from interlace.core.engine.safe_pickle import UnsafePickleError, load_pickle, loads


class _RunsShell:
    """Unpickling this with plain pickle runs ``touch MARKER``."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_that_would_run_a_command_is_refused_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "nuscenes_infos_train.pkl"
    payload = {"metainfo": {"version": "v1.0-trainval"},
               "data_list": [{"token": "a", "lidar_points": _RunsShell(marker)}]}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(UnsafePickleError) as info:
        load_pickle(path)
    message = str(info.value)
    assert str(path) in message and f"'{os.system.__module__}.system'" in message
    assert info.value.refused == f"{os.system.__module__}.system"
    assert info.value.source == str(path)
    assert not marker.exists()
    # the tools' one-line error path (exit 2) and pickle's own error type both catch it
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, pickle.UnpicklingError)
    # the control: plain pickle would have run the command
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("global_name", ["builtins eval", "builtins getattr", "subprocess Popen",
                                         "numpy load", "numpy.lib.npyio load",
                                         "copyreg _reconstructor", "torch load"])
def test_other_callables_are_refused_by_name(global_name):
    module, name = global_name.split()
    data = b"c" + f"{module}\n{name}\n".encode() + b"(tR."  # GLOBAL, MARK, TUPLE, REDUCE
    with pytest.raises(UnsafePickleError, match=rf"<bytes>: refused to load '{module}.{name}'"):
        loads(data)


def test_codecs_encode_is_allowed_for_latin1_only():
    assert loads(pickle.dumps(b"\x00\xff", protocol=2)) == b"\x00\xff"
    evil = b"c_codecs\nencode\n(Vx\nVrot13\ntR."
    with pytest.raises(pickle.UnpicklingError, match="only as encode.*'rot13'"):
        loads(evil)


DTYPES = [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int32, np.int64, np.bool_,
          np.complex64]


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_arrays_dtypes_and_scalars_round_trip(protocol):
    rng = np.random.default_rng(0)
    arrays = [(rng.standard_normal((3, 4)) * 10).astype(dtype) for dtype in DTYPES]
    arrays += [np.arange(12.0).reshape(3, 4).T,  # not C-contiguous
               np.array(["car", "pedestrian"]), np.zeros((0, 9), np.float32),
               np.array([(1, 2.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
               np.array([1, "x", None], dtype=object), np.array("2020-01-01", "datetime64[ns]")]
    payload = {"arrays": arrays, "dtypes": [np.dtype(d) for d in DTYPES] + [np.dtype(">f4")],
               "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True), np.str_("a")],
               "plain": [1, 2.5, 1 + 2j, "s", b"b", bytearray(b"ba"), None, True, (1,),
                         {1, 2}, frozenset({3}), collections.OrderedDict(k=1)]}
    loaded = loads(pickle.dumps(payload, protocol=protocol))
    for got, expected in zip(loaded["arrays"], arrays):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes() if expected.dtype != object else \
            got.tolist() == expected.tolist()
    assert loaded["dtypes"] == payload["dtypes"]
    for got, expected in zip(loaded["scalars"], payload["scalars"]):
        assert type(got) is type(expected) and got == expected
    assert loaded["plain"] == payload["plain"]
    assert type(loaded["plain"][-1]) is collections.OrderedDict


def test_numpy_2_module_paths_load_with_the_installed_numpy():
    """numpy 2 pickles name ``numpy._core.multiarray``, numpy 1 ``numpy.core.multiarray``;
    either loads whichever numpy is installed."""
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    written = pickle.dumps({"a": array, "s": np.float64(2.5)}, protocol=2)  # GLOBAL by text
    for module_path in (b"numpy.core.", b"numpy._core."):
        data = written.replace(b"numpy._core.", b"numpy.core.").replace(b"numpy.core.", module_path)
        assert module_path + b"multiarray" in data
        loaded = loads(data)
        assert np.array_equal(loaded["a"], array) and loaded["s"] == 2.5


def test_truncated_and_missing_files_raise_the_usual_errors(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"data_list": list(range(100))})[:-10])
    with pytest.raises((EOFError, pickle.UnpicklingError)):
        load_pickle(path)
    with pytest.raises(FileNotFoundError, match="nowhere.pkl does not exist"):
        load_pickle(tmp_path / "nowhere.pkl")


@pytest.fixture(scope="module")
def created_infos(tmp_path_factory):
    """Info files written by the project's own create_data path on a generated database."""
    from interlace.domains.driving.data.info_creation import create_nuscenes_infos
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes

    root = tmp_path_factory.mktemp("nuscenes")
    make_synthetic_nuscenes(root, scenes=1, samples_per_scene=2, version="v1.0-mini")
    return create_nuscenes_infos(root, "v1.0-mini", root, max_sweeps=2, progress=False)


def test_info_files_from_create_data_load(created_infos):
    from interlace.domains.driving.data.info_files import load_info_file

    path = created_infos["val"]["path"]
    payload = load_pickle(path)
    assert payload == pickle.loads(path.read_bytes())  # the same objects plain pickle makes
    metainfo, data_list = load_info_file(path, "v1.0-mini")
    assert len(data_list) == created_infos["val"]["samples"] == 2
    assert metainfo["version"] == "v1.0-mini"


def test_an_mmengine_dumped_info_file_with_numpy_arrays_loads(tmp_path):
    """mmdet3d writes info files with mmengine.dump (pickle protocol 2): bytes and array
    buffers go through _codecs.encode, arrays through numpy.core.multiarray."""
    import mmengine

    sample = {"token": "t", "lidar_points": {"lidar_path": "x.bin", "num_pts_feats": 5,
                                             "lidar2ego": np.eye(4).tolist()},
              "instances": [{"bbox_3d": [1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.1],
                             "bbox_label_3d": 0, "velocity": np.array([0.5, -0.25]),
                             "num_lidar_pts": np.int64(12)}],
              "gt_boxes": np.ones((1, 7), np.float32), "gt_names": np.array(["car"])}
    path = tmp_path / "nuscenes_infos_val.pkl"
    mmengine.dump({"metainfo": {"version": "v1.0-mini"}, "data_list": [sample]}, str(path))
    loaded = load_pickle(path)["data_list"][0]
    assert np.array_equal(loaded["gt_boxes"], sample["gt_boxes"])
    assert loaded["gt_names"].tolist() == ["car"] and loaded["instances"][0]["num_lidar_pts"] == 12


def test_info_file_reader_passes_the_refusal_through(tmp_path):
    from interlace.domains.driving.data.info_files import load_info_file

    marker = tmp_path / "pwned"
    path = tmp_path / "evil_infos.pkl"
    path.write_bytes(pickle.dumps({"metainfo": {}, "data_list": [_RunsShell(marker)]}))
    with pytest.raises(UnsafePickleError, match=r"evil_infos\.pkl: refused to load '\w+\.system'"):
        load_info_file(path)
    assert not marker.exists()


def test_visualize_and_gt_paste_readers_refuse_too(tmp_path):
    from interlace.domains.driving.data.gt_paste import DataBaseSampler
    from interlace.tools import visualize

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"data_list": [], "x": _RunsShell(marker)}))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl"):
        visualize.load_infos(str(path))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl"):
        DataBaseSampler(path, tmp_path, sample_groups={"car": 1})
    assert not marker.exists()
