"""Where the remote sensing configs live."""
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[4] / "configs" / "remote_sensing"
