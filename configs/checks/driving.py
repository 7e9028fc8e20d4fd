# The driving check (python tools/check.py driving): does the camera stream add to the LiDAR
# stream? LiDAR-only (TransFusion-L) and LiDAR+camera (DeepInteraction, started from the
# LiDAR-only run) on a generated nuScenes-format set, scored with the devkit's
# DetectionEval on held-out val scenes, and the fusion model again with the camera dropped.
# Every step is a complete config; `tools/train.py CONFIG` trains what the step trains.
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
]

# --smoke: a small set and 2 iterations per run, to test the sequence (not a result). It
# writes data/checks/ and work_dirs/ under the current folder: run it in a scratch folder.
smoke = dict(data=dict(scenes=3, samples_per_scene=2), cfg_options=dict(budget_iters=2))

# What `tools/check.py driving --update-zoo` records in the model zoo.
_data = "generated nuScenes-format: 30 scenes x 8 key frames, 6 val scenes held out"
_tp = ("mATE", "mASE", "mAOE", "mAVE", "mAAE")
model_zoo = [
    dict(metafile="configs/driving/transfusion_l/metafile.yml", collection="TransFusion-L",
         name="transfusion-l_voxel0.4-tiny_b2-4300it_nus-synthetic-check", config=_lidar,
         task="3D Object Detection", dataset="generated val (48 samples)", data=_data,
         budget="4300 it", command="python tools/check.py driving",
         metrics=dict(mAP="lidar_only_test.mAP", NDS="lidar_only_test.NDS",
                      **{k: f"lidar_only_test.{k}" for k in _tp})),
    dict(metafile="configs/driving/deepinteraction/metafile.yml", collection="DeepInteraction",
         name="deepinteraction_r18-tiny_b2-1350it_nus-synthetic-check", config=_fusion,
         task="3D Object Detection", dataset="generated val (48 samples)", data=_data,
         budget="4300 + 1350 it", command="python tools/check.py driving",
         metrics=dict(mAP="fusion_test.mAP", NDS="fusion_test.NDS",
                      **{k: f"fusion_test.{k}" for k in _tp},
                      **{"mAP, camera dropped": "fusion_drop_camera_test.mAP"})),
]
