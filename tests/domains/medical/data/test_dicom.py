"""DICOM read as displayed: LUTs as pydicom applies them, MONOCHROME1, colour, 1-bit,
multi-frame, compressed transfer syntaxes; every error names the file."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import (apply_color_lut, apply_modality_lut, apply_voi_lut,
                            convert_color_space, pack_bits)
from pydicom.sequence import Sequence
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless,
                         generate_uid)

from interlace.core.engine.registry import TRANSFORMS
from interlace.domains.medical.data import dicom as dicom_module
from interlace.domains.medical.data.dicom import read_dicom_image
from interlace.domains.medical.data.luminance import rgb_to_luminance
from interlace.domains.medical.data.transforms import ImageLoadError, LoadCxrImaged


def _dataset(pixels, photometric="MONOCHROME2", bits_stored=12, *, signed=False,
             frames=None, **elements):
    """A DX image holding `pixels` ((H, W), (H, W, 3) or (frames, H, W)) uncompressed."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "synthetic"
    colour = photometric in ("RGB", "YBR_FULL")
    ds.Rows, ds.Columns = pixels.shape[1:3] if frames else pixels.shape[:2]
    if frames:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.PixelRepresentation = int(signed)
    ds.BitsStored = bits_stored
    if bits_stored == 1:
        ds.BitsAllocated, ds.HighBit = 1, 0
        ds.PixelData = pack_bits(pixels.astype(np.uint8))
    else:
        ds.BitsAllocated = 8 if bits_stored <= 8 else 16
        ds.HighBit = bits_stored - 1
        dtype = f"{'i' if signed else 'u'}{ds.BitsAllocated // 8}"
        ds.PixelData = pixels.astype(dtype).tobytes()
    for name, value in elements.items():
        setattr(ds, name, value)
    return ds


def _save(ds, path):
    ds.save_as(path, enforce_file_format=True)
    return path


def _chest(rows=48, columns=40, seed=0):
    """12-bit stored values with structure and noise."""
    yy, xx = np.mgrid[:rows, :columns]
    noise = np.random.default_rng(seed).integers(0, 300, (rows, columns))
    return (yy * 50 + xx * 30 + noise).clip(0, 4095).astype(np.uint16)


def _scaled(values, low, high):
    return ((np.asarray(values, np.float64) - low) / (high - low) * 255).clip(0, 255)


# ------------------------------------------------------------------ grayscale LUT chain
def test_rescale_and_window_equal_pydicoms_own_luts(tmp_path):
    path = _save(_dataset(_chest(), RescaleSlope=2, RescaleIntercept=-100,
                          WindowCenter=2000, WindowWidth=3000), tmp_path / "w.dcm")
    ds = dcmread(path)
    expected_values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    # The window's output spans the rescaled stored range: 0*2-100 .. 4095*2-100.
    expected = _scaled(expected_values, -100, 8090)
    image = read_dicom_image(path)
    assert image.dtype == np.float32 and image.shape == (48, 40)
    np.testing.assert_allclose(image, expected, atol=1e-3)
    # by hand (PS3.3 C.11.2.1.2, LINEAR): values <= 500 black, > 3499 white, the centre
    # 2000 (stored 1050) at ((2000 - 1999.5) / 2999 + 0.5) of the range
    hand = _save(_dataset(np.array([[0, 300, 1050, 1801]]), RescaleSlope=2,
                          RescaleIntercept=-100, WindowCenter=2000, WindowWidth=3000),
                 tmp_path / "hand.dcm")
    np.testing.assert_allclose(read_dicom_image(hand),
                               [[0.0, 0.0, 255 * (0.5 + 0.5 / 2999), 255.0]], rtol=1e-6)


def test_voi_lut_sequence_maps_its_own_entries_onto_0_255(tmp_path):
    # 12-bit entries under a 16-bit descriptor (common on CR); the LUT is preferred over
    # the window, as pydicom does.
    entries = (np.arange(4096) * 0.5 + 1000).astype(np.uint16)  # 1000 .. 3047
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new("LUTData", "US", entries.tolist())
    ds = _dataset(_chest(), VOILUTSequence=Sequence([item]), WindowCenter=100,
                  WindowWidth=10)
    path = _save(ds, tmp_path / "voi.dcm")
    ds = dcmread(path)
    expected = _scaled(apply_voi_lut(ds.pixel_array, ds), 1000, 3047)
    np.testing.assert_allclose(read_dicom_image(path), expected, atol=1e-3)
    # CR writes a rescale of slope 1 beside the LUT: float modality values index the LUT
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    rescaled = _save(ds, tmp_path / "voi_rescale.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_dicom_image(rescaled), read_dicom_image(path))


def test_modality_lut_sequence_with_the_stored_range(tmp_path):
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]  # PS3.3 C.11.1.1.1: 8 or 16
    item.add_new("LUTData", "US", (4095 - np.arange(4096) // 2).tolist())  # 2048 .. 4095
    path = _save(_dataset(_chest(), ModalityLUTSequence=Sequence([item])),
                 tmp_path / "modality_lut.dcm")
    ds = dcmread(path)
    expected = _scaled(apply_modality_lut(ds.pixel_array, ds), 2048, 4095)
    np.testing.assert_allclose(read_dicom_image(path, no_window="stored_range"), expected,
                               atol=1e-3)


def test_without_window_min_max_or_stored_range(tmp_path):
    pixels = np.array([[100, 200], [300, 500]])
    path = _save(_dataset(pixels, RescaleSlope=1, RescaleIntercept=0), tmp_path / "n.dcm")
    np.testing.assert_allclose(read_dicom_image(path), [[0, 63.75], [127.5, 255]])
    np.testing.assert_allclose(read_dicom_image(path, no_window="stored_range"),
                               pixels / 4095 * 255, rtol=1e-6)


def test_monochrome1_is_the_inverse_of_its_monochrome2_twin(tmp_path):
    stored = _chest()
    for window in ({}, dict(WindowCenter=1800, WindowWidth=2500)):
        twin = read_dicom_image(_save(_dataset(stored, "MONOCHROME2", **window),
                                      tmp_path / "m2.dcm"))
        mono1 = read_dicom_image(_save(_dataset(stored, "MONOCHROME1", **window),
                                       tmp_path / "m1.dcm"))
        np.testing.assert_allclose(mono1, 255 - twin, atol=1e-4)
    # so a MONOCHROME1 file holding the negative reads like the positive
    positive = read_dicom_image(_save(_dataset(stored, "MONOCHROME2"), tmp_path / "p.dcm"))
    negative = read_dicom_image(_save(_dataset(4095 - stored, "MONOCHROME1"),
                                      tmp_path / "n.dcm"))
    np.testing.assert_allclose(negative, positive, atol=1e-4)
    assert positive[-1, -1] > positive[0, 0]  # the bright corner stays bright


def test_signed_pixels_with_window(tmp_path):
    stored = np.array([[-2048, 0], [1000, 2047]])
    path = _save(_dataset(stored, signed=True, WindowCenter=0, WindowWidth=4096),
                 tmp_path / "s.dcm")
    ds = dcmread(path)
    expected = _scaled(apply_voi_lut(ds.pixel_array, ds), -2048, 2047)
    np.testing.assert_allclose(read_dicom_image(path), expected, atol=1e-3)


# ------------------------------------------------------------------------------ colour
def test_luminance_is_pillows_convert_l():
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(rgb_to_luminance(rgb), pillow)
    assert rgb_to_luminance(np.array([65535, 65535, 65535], np.uint16)) == 65535
    np.testing.assert_allclose(rgb_to_luminance(np.array([1.0, 1.0, 1.0])), 1.0)


def _palette_dataset(indices, palette, entry_bits):
    ds = _dataset(indices, "PALETTE COLOR", 8)
    for channel, name in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [len(palette), 0, entry_bits])
        entries = palette[:, channel].astype("<u2" if entry_bits == 16 else "u1")
        ds.add_new(f"{name}PaletteColorLookupTableData", "OW", entries.tobytes())
    return ds


def test_palette_image_equals_the_luminance_of_its_rgb_and_its_png(tmp_path):
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (256, 3))
    indices = rng.integers(0, 256, (30, 20)).astype(np.uint8)
    rgb = palette[indices].astype(np.uint8)
    rgb_path = _save(_dataset(rgb, "RGB", 8), tmp_path / "rgb.dcm")
    png = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(png)
    loader = LoadCxrImaged()
    from_png = loader({"img_path": str(png)})["img"][0].numpy()
    from_rgb = loader({"img_path": str(rgb_path)})["img"][0].numpy()
    palette8 = _save(_palette_dataset(indices, palette, 8), tmp_path / "palette8.dcm")
    from_palette = loader({"img_path": str(palette8)})["img"][0].numpy()
    # 8-bit entries: the palette image, its RGB DICOM and its PNG are the same numbers
    np.testing.assert_array_equal(from_rgb, rgb_to_luminance(rgb))
    np.testing.assert_array_equal(from_palette, from_rgb)
    np.testing.assert_array_equal(from_png, from_rgb)
    # 16-bit entries (the 8-bit colours x 257): the luminance before 8-bit rounding
    palette16 = _save(_palette_dataset(indices, palette * 257, 16), tmp_path / "p16.dcm")
    np.testing.assert_allclose(read_dicom_image(palette16),
                               rgb_to_luminance(rgb.astype(np.float64)), atol=0.01)


def test_pydicoms_palette_example_is_its_luminance_not_its_indices():
    path = get_testdata_file("examples_palette.dcm")  # 8-bit indices, 16-bit entries
    ds = dcmread(path)
    rgb = apply_color_lut(ds.pixel_array, ds)
    expected = rgb_to_luminance(rgb) / 65535 * 255
    image = read_dicom_image(path)
    np.testing.assert_allclose(image, expected, rtol=1e-6)
    assert np.corrcoef(image.ravel(), ds.pixel_array.ravel())[0, 1] < 0.8


def test_rgb_and_ybr_dicoms_become_luminance(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (24, 32, 3)).astype(np.uint8)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    from_ybr = read_dicom_image(_save(_dataset(ybr, "YBR_FULL", 8), tmp_path / "ybr.dcm"))
    # YBR_FULL round trip in 8 bits is within a level or two of the RGB
    assert np.abs(from_ybr - rgb_to_luminance(rgb)).max() <= 2
    for name in ("examples_rgb_color.dcm", "SC_ybr_full_422_uncompressed.dcm"):
        path = get_testdata_file(name)
        image = LoadCxrImaged()({"img_path": path})["img"]
        assert image.shape == (1, *dcmread(path).pixel_array.shape[:2])
        np.testing.assert_array_equal(image[0].numpy(),
                                      rgb_to_luminance(dcmread(path).pixel_array))


def test_unsupported_colour_space_is_named_as_colour(tmp_path, monkeypatch):
    path = _save(_dataset(np.zeros((4, 4, 3)), "RGB", 8), tmp_path / "hsv.dcm")

    def decode_as_hsv(path, ds, frame):
        return np.zeros((4, 4, 3), np.uint8), "HSV"
    monkeypatch.setattr(dicom_module, "_decode_frame", decode_as_hsv)
    with pytest.raises(ImageLoadError, match=r"hsv\.dcm: colour DICOM .*'HSV'"):
        read_dicom_image(path)


# ----------------------------------------------------------------------------- 1-bit
def test_one_bit_images_load_as_black_and_white(tmp_path):
    bits = (np.add.outer(np.arange(13), np.arange(7)) % 3 == 0)  # 91 bits: not byte aligned
    image = read_dicom_image(_save(_dataset(bits, bits_stored=1), tmp_path / "bit.dcm"))
    np.testing.assert_array_equal(image, bits * 255.0)
    liver = get_testdata_file("liver_1frame.dcm")  # failed in MONAI's reader
    image = LoadCxrImaged()({"img_path": liver})["img"]
    np.testing.assert_array_equal(image[0].numpy(), dcmread(liver).pixel_array * 255.0)


# ------------------------------------------------------------------------ multi-frame
def test_multi_frame_is_refused_with_its_count_unless_a_frame_is_picked(tmp_path):
    stack = np.stack([_chest(seed=s) for s in range(3)])
    path = _save(_dataset(stack, frames=3, WindowCenter=2000, WindowWidth=4000),
                 tmp_path / "stack.dcm")
    with pytest.raises(ImageLoadError, match=r"stack\.dcm: multi-frame DICOM with 3 frames"):
        LoadCxrImaged()({"img_path": str(path)})
    single = _save(_dataset(stack[2], WindowCenter=2000, WindowWidth=4000),
                   tmp_path / "third.dcm")
    loader = TRANSFORMS.build(dict(type="LoadCxrImaged", frame=2))
    torch.testing.assert_close(loader({"img_path": str(path)})["img"],
                               LoadCxrImaged()({"img_path": str(single)})["img"])
    with pytest.raises(ImageLoadError, match=r"frame 3 requested but the file has 3 frames"):
        read_dicom_image(path, frame=3)


# ------------------------------------------------------------------------ compression
def test_encoded_jpeg2000_and_rle_load_as_the_uncompressed_pixels(tmp_path):
    ds = _dataset(_chest(64, 48), "MONOCHROME1", WindowCenter=2000, WindowWidth=3500)
    reference = read_dicom_image(_save(ds, tmp_path / "plain.dcm"))
    for syntax in (JPEG2000Lossless, RLELossless):
        compressed = _dataset(_chest(64, 48), "MONOCHROME1", WindowCenter=2000,
                              WindowWidth=3500)
        compressed.compress(syntax)
        path = _save(compressed, tmp_path / f"{syntax.keyword}.dcm")
        assert dcmread(path).file_meta.TransferSyntaxUID == syntax
        np.testing.assert_array_equal(read_dicom_image(path), reference)


@pytest.mark.parametrize("compressed, uncompressed", [
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm"),                 # JPEG Lossless SV1
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),          # JPEG-LS lossless
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),              # JPEG 2000 lossless
])
def test_pydicoms_lossless_examples_match_their_uncompressed_twins(compressed, uncompressed):
    np.testing.assert_array_equal(read_dicom_image(get_testdata_file(compressed)),
                                  read_dicom_image(get_testdata_file(uncompressed)))


def test_twelve_bit_jpeg_extended_equals_pydicoms_decoding():
    path = get_testdata_file("JPGExtended.dcm")  # 12-bit, a single frame in a frame list
    ds = dcmread(path)
    stored = ds.pixel_array
    assert ds.BitsStored == 12 and stored.max() > 255
    image = read_dicom_image(path)
    np.testing.assert_allclose(image, _scaled(stored, stored.min(), stored.max()), atol=1e-3)


def test_missing_codec_names_the_file_and_the_plugins(tmp_path, monkeypatch):
    ds = _dataset(_chest())
    ds.compress(RLELossless)
    path = _save(ds, tmp_path / "needs_codec.dcm")

    class NoCodec:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0"]
    monkeypatch.setattr(dicom_module, "get_decoder", lambda syntax: NoCodec())
    with pytest.raises(ImageLoadError,
                       match=r"needs_codec\.dcm: no installed codec for RLE Lossless.*pylibjpeg"):
        read_dicom_image(path)


# ------------------------------------------------------------------------ file header
def test_file_without_preamble_and_meta_is_read_and_junk_is_named(tmp_path):
    # old ACR-NEMA style exports: the dataset alone, implicit VR little endian
    stored = _chest()
    ds = _dataset(stored)
    del ds.file_meta
    path = tmp_path / "no_meta.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    with_meta = _save(_dataset(stored), tmp_path / "with_meta.dcm")
    np.testing.assert_array_equal(read_dicom_image(path), read_dicom_image(with_meta))
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 300)
    with pytest.raises(ImageLoadError, match=r"junk\.dcm: not a readable DICOM file"):
        read_dicom_image(junk)


def test_dicom_named_like_an_archive_is_found_by_its_preamble(tmp_path):
    stored = _chest()
    named = _save(_dataset(stored), tmp_path / "a.dcm")
    for name in ("IM000001", "1.2.840.113619.2.55.3.604688119.868"):
        path = _save(_dataset(stored), tmp_path / name)
        torch.testing.assert_close(LoadCxrImaged()({"img_path": str(path)})["img"],
                                   LoadCxrImaged()({"img_path": str(named)})["img"])
    assert not dicom_module.is_dicom_file(tmp_path / "missing")
