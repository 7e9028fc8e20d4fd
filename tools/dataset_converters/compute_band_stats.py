"""Per-band mean / std of a Sentinel-1/2 data root, for normalisation.

Example:
  python tools/dataset_converters/compute_band_stats.py /tmp/s1s2 --out /tmp/s1s2/band_stats.json

The code is `interlace.tools.compute_band_stats`; `--help` lists every option.
"""
import sys

from interlace.tools.compute_band_stats import main

if __name__ == "__main__":
    sys.exit(main())
