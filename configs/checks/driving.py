# The driving check (python tools/check.py driving): does the camera stream add to the LiDAR
# stream? LiDAR-only (TransFusion-L) and LiDAR+camera (DeepInteraction, started from the
# LiDAR-only run) on a generated nuScenes-format set, scored with the devkit's
# DetectionEval on held-out val scenes, and the fusion model again with the camera dropped.
# Every step is a complete config; `tools/train.py CONFIG` trains what the step trains.
# Then velocity and direction of travel (issue 18's targets): the motion diagnosis of both
# test runs, the fusion model scored again with the sweeps' time lags reversed (does it
# read motion from the lag?), the points voxelisation keeps, and the GT exported as
# predictions (the export of headings and velocities).
domain = "driving"
threads = 1  # on a shared 2-core CPU more threads than free cores slowed a step down
data = dict(root="data/checks/nuscenes_synthetic", scenes=30, samples_per_scene=8,
            version="v1.0-trainval", seed=0, max_sweeps=3)

_lidar = "configs/driving/transfusion_l/transfusion-l_voxel0.4-tiny_b2-4300it_nus-synthetic-check.py"
_fusion = "configs/driving/deepinteraction/deepinteraction_r18-tiny_b2-1350it_nus-synthetic-check.py"
steps = [
    dict(name="lidar_only", kind="train", config=_lidar),
    dict(name="fusion", kind="train", config=_fusion),
    dict(name="lidar_only_test", kind="test", config=_lidar, checkpoint="lidar_only"),
    dict(name="fusion_test", kind="test", config=_fusion, checkpoint="fusion"),
    dict(name="fusion_drop_camera_test", kind="test", config=_fusion, checkpoint="fusion",
         drop=["camera"]),
    # moving (GT > 1 m/s) / parked (< 0.2 m/s) objects matched as the devkit matches (2 m)
    dict(name="lidar_only_motion", kind="motion", test="lidar_only_test"),
    dict(name="fusion_motion", kind="motion", test="fusion_test"),
    # ReverseTimeLag (lag t -> W - t, W the oldest sweep's lag) after the sweep loader;
    # fusion_test is the normal run of the same config and checkpoint
    dict(name="fusion_lag_reversal", kind="lag_reversal", config=_fusion, checkpoint="fusion",
         reference="fusion_test"),
    dict(name="voxel_coverage", kind="voxel_coverage",
         configs=dict(lidar_only=_lidar, fusion=_fusion), samples=8),
    dict(name="gt_as_predictions", kind="gt_as_predictions"),
]

_classes = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle",
            "bicycle", "pedestrian", "traffic_cone"]
_twins = ["bicycle", "motorcycle"]  # same LiDAR shape and intensity: only colour differs


def _gain(classes):
    terms = " + ".join(f"fusion_test.AP_{c} - lidar_only_test.AP_{c}" for c in classes)
    return f"({terms}) / {len(classes)}"


thresholds = [
    dict(name="fusion mAP", value="fusion_test.mAP", min=0.80),
    dict(name="fusion minus LiDAR-only (mAP)", value="fusion_test.mAP - lidar_only_test.mAP",
         min=0.05),
    dict(name="gain on bicycle / motorcycle minus gain on the other classes (AP)",
         value=f"{_gain(_twins)} - {_gain([c for c in _classes if c not in _twins])}", min=0.0),
    dict(name="fusion with the camera dropped minus LiDAR-only (mAP)",
         value="fusion_drop_camera_test.mAP - lidar_only_test.mAP", min=-0.1, max=0.1),
    # velocity and direction of travel
    dict(name="fusion mAVE", value="fusion_test.mAVE", max=0.8),
    dict(name="fusion mAOE", value="fusion_test.mAOE", max=0.4),
    dict(name="fusion NDS", value="fusion_test.NDS", min=0.70),
    dict(name="LiDAR-only mAVE", value="lidar_only_test.mAVE", max=0.8),
    dict(name="LiDAR-only mAOE", value="lidar_only_test.mAOE", max=0.5),
    dict(name="fusion: moving vehicles headed the right way",
         value="fusion_motion.vehicle_moving_dir_acc", min=0.90),
    dict(name="fusion: moving vehicles' velocity error (m/s)",
         value="fusion_motion.vehicle_moving_vel_err", max=1.0),
    dict(name="fusion: parked vehicles headed the right way",
         value="fusion_motion.vehicle_parked_dir_acc", min=0.80),
    dict(name="LiDAR-only: moving vehicles headed the right way",
         value="lidar_only_motion.vehicle_moving_dir_acc", min=0.90),
    dict(name="LiDAR-only: moving vehicles' velocity error (m/s)",
         value="lidar_only_motion.vehicle_moving_vel_err", max=1.0),
    dict(name="fusion: reversed lags change moving vehicles' velocity (share of |v|)",
         value="fusion_lag_reversal.velocity_change", min=0.5),
    dict(name="voxelisation keeps in-range points (lowest share, train and test)",
         value="voxel_coverage.min_kept_share", min=0.95),
    dict(name="sweep share after voxelisation minus before (largest |shift|)",
         value="voxel_coverage.max_abs_sweep_shift", max=0.02),
    dict(name="GT as predictions: mAOE", value="gt_as_predictions.mAOE_present", max=0.01),
    dict(name="GT as predictions: mAVE (classes with a GT velocity)",
         value="gt_as_predictions.mAVE_present", max=0.01),
]

# --smoke: a small set and 2 iterations per run, to test the sequence (not a result). It
# writes data/checks/ and work_dirs/ under the current folder: run it in a scratch folder.
smoke = dict(data=dict(scenes=3, samples_per_scene=2), cfg_options=dict(budget_iters=2))

# What `tools/check.py driving --update-zoo` records in the model zoo.
_data = "generated nuScenes-format: 30 scenes x 8 key frames, 6 val scenes held out"
_tp = ("mATE", "mASE", "mAOE", "mAVE", "mAAE")


def _motion(step):
    """The vehicle rows of a motion step: direction accuracy, moving velocity error and
    the 0 m/s baseline's, for the zoo table."""
    return {"dir. moving": f"{step}.vehicle_moving_dir_acc",
            "dir. parked": f"{step}.vehicle_parked_dir_acc",
            "vel. err. moving (m/s)": f"{step}.vehicle_moving_vel_err",
            "0 m/s vel. err.": f"{step}.vehicle_moving_zero_vel_err"}


model_zoo = [
    dict(metafile="configs/driving/transfusion_l/metafile.yml", collection="TransFusion-L",
         name="transfusion-l_voxel0.4-tiny_b2-4300it_nus-synthetic-check", config=_lidar,
         task="3D Object Detection", dataset="generated val (48 samples)", data=_data,
         budget="4300 it", command="python tools/check.py driving",
         metrics=dict(mAP="lidar_only_test.mAP", NDS="lidar_only_test.NDS",
                      **{k: f"lidar_only_test.{k}" for k in _tp},
                      **_motion("lidar_only_motion"))),
    dict(metafile="configs/driving/deepinteraction/metafile.yml", collection="DeepInteraction",
         name="deepinteraction_r18-tiny_b2-1350it_nus-synthetic-check", config=_fusion,
         task="3D Object Detection", dataset="generated val (48 samples)", data=_data,
         budget="4300 + 1350 it", command="python tools/check.py driving",
         metrics=dict(mAP="fusion_test.mAP", NDS="fusion_test.NDS",
                      **{k: f"fusion_test.{k}" for k in _tp},
                      **_motion("fusion_motion"),
                      **{"lag reversal": "fusion_lag_reversal.velocity_change",
                         "mAP, camera dropped": "fusion_drop_camera_test.mAP"})),
]
