"""Driving data: nuScenes through nuscenes-devkit, mmdet3d v1.x info files, the dataset
and its transforms. Importing this package registers them under scope `interlace`."""
from .nuscenes_names import CAMERAS, CLASSES  # noqa: F401
from .info_files import InfoFileError, load_info_file, save_info_file  # noqa: F401
from .info_creation import create_nuscenes_infos  # noqa: F401
from .nuscenes_dataset import NuScenesDataset  # noqa: F401
from .class_balanced import CBGSDataset  # noqa: F401
from . import transforms  # noqa: F401  registers the driving transforms
