"""Named modality layouts for the folders users download (fields of ``ModalitySpec``).

A dataset takes one by name in place of a modality dict, or as ``preset`` inside one with
overrides::

    SentinelTimeSeriesDataset(root, modalities=dict(s2='s2_l2a_safe'))
    SentinelTimeSeriesDataset(root, modalities=dict(s2=dict(preset='s2_cogs', folder='cogs')))

- ``s2_l2a_safe``: Sentinel-2 L2A SAFE products as downloaded, unpacked or in their zip
  (``*.SAFE/GRANULE/*/IMG_DATA/R10m|R20m/*_B02_10m.jp2``): date and tile from the product
  name, B02 B03 B04 B08 at 10 m, B05 B06 B07 B8A B11 B12 and SCL at 20 m (the copies at
  other resolutions are passed over), BOA offsets of baseline >= 04.00 applied (see
  :mod:`.safe_products`).
- ``s2_cogs``: one folder of single-band COGs per scene, named like the STAC catalogues
  name them, ``S2B_32TNR_20210315_0_L2A/B02.tif`` or ``.../blue.tif`` (and ``SCL.tif`` /
  ``scl.tif``); date and tile from the folder name.
- ``landsat_c2_l2``: Landsat 8/9 Collection 2 Level-2 surface reflectance,
  ``LC08_L2SP_196029_20210315_20210324_02_T1_SR_B2.TIF``; the six bands that match
  Sentinel-2's are returned under their S2 names. Landsat stores reflectance as
  DN * 2.75e-5 - 0.2, not DN / 10000: give the dataset band statistics
  (docs/data/remote_sensing.md shows how for a named layout) so the values are normalised.
"""
from __future__ import annotations

from .bands import S2_BANDS, SCL_BAND

__all__ = ["LAYOUTS", "S2_COG_BAND_MAP", "SAFE_BAND_MAP", "LANDSAT_OLI_BAND_MAP", "layout"]

_S2_NAME_BANDS = {  # STAC asset names of Sentinel-2 L2A COGs
    "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "swir16": "B11", "swir22": "B12",
    "scl": "SCL"}
S2_COG_BAND_MAP: dict[str, str] = {**{b: b for b in (*S2_BANDS, SCL_BAND)}, **_S2_NAME_BANDS}

# Each band at its finest resolution; SCL exists at 20 m and 60 m only.
SAFE_BAND_MAP: dict[str, str] = {
    **{f"{b}_10m": b for b in ("B02", "B03", "B04", "B08")},
    **{f"{b}_20m": b for b in ("B05", "B06", "B07", "B8A", "B11", "B12", SCL_BAND)}}

# Landsat 8/9 OLI band number -> the Sentinel-2 band of the same wavelength.
LANDSAT_OLI_BAND_MAP: dict[str, str] = {"2": "B02", "3": "B03", "4": "B04", "5": "B08",
                                        "6": "B11", "7": "B12"}

_SAFE_PRODUCT = (r"S2[A-D]_MSIL2A_(?P<date>\d{8}T\d{6})_N\d{4}_R\d{3}_T(?P<tile>\d{2}[A-Z]{3})"
                 r"_\d{8}T\d{6}\.SAFE")

LAYOUTS: dict[str, dict] = {
    "s2_l2a_safe": dict(
        folder="s2", filename_glob="*.jp2", match_path=True, layout="s2_safe", search_zips=True,
        filename_regex=_SAFE_PRODUCT + r"/GRANULE/[^/]+/IMG_DATA/R\d{2}m/[^/]+\.jp2$",
        band_regex=r"_(?P<band>[A-Z0-9]{3}_\d{2}m)\.jp2$", band_map=SAFE_BAND_MAP,
        bands=S2_BANDS, mask_band=SCL_BAND, band_order=None, date_format=None, dated=True),
    "s2_cogs": dict(
        folder="s2", filename_glob="*.tif", match_path=True, layout=None,
        filename_regex=r"(?:^|/)S2[A-D]_(?P<tile>\d{2}[A-Z]{3})_(?P<date>\d{8})_\d+_L2A/[^/]+\.tif$",
        band_regex=r"^(?P<band>[^.]+)\.tif$", band_map=S2_COG_BAND_MAP,
        bands=S2_BANDS, mask_band=SCL_BAND, band_order=None, date_format="%Y%m%d", dated=True),
    "landsat_c2_l2": dict(
        folder="landsat", filename_glob="L*_SR_B*.TIF", match_path=False, layout=None,
        filename_regex=(r"^L[COTEM]0[89]_L2SP_(?P<tile>\d{6})_(?P<date>\d{8})_\d{8}_\d{2}_"
                        r"(?:T1|T2|RT)_SR_B\d+\.TIF$"),
        band_regex=r"_SR_B(?P<band>\d+)\.TIF$", band_map=LANDSAT_OLI_BAND_MAP,
        bands=tuple(LANDSAT_OLI_BAND_MAP.values()), mask_band=None, band_order=None,
        date_format="%Y%m%d", dated=True),
}


def layout(name: str) -> dict:
    """A copy of the named layout; the error lists the known names."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown modality layout {name!r}; known: {sorted(LAYOUTS)}")
    return dict(LAYOUTS[name])
