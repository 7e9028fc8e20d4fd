# The medical check (python tools/check.py medical): does MGCA pre-training on report text
# teach the image encoder what the reports say, and where? On a generated MIMIC-CXR-JPG set
# (1,500 studies at 192 px, findings drawn with masks), three pre-training runs of 600
# iterations: MGCA as published, MGCA whose token level is cross-sample word-region matching,
# and ConVIRT (instance loss only). Then MGCA's linear probe (frozen global features, 1 / 10
# / 100 % of the training labels, 5 seeds) of each and of the same encoder with random
# weights, and the word -> patch attention of the located words against the drawn masks.
domain = "medical"
threads = 0  # torch's default: the ResNet-18 and MiniLM GEMMs use both cores
data = dict(root="data/checks/mimic_synthetic", studies=1500, seed=0, image_size=192)

_mgca = "configs/medical/mgca/mgca_r18-minilm_b32-600it_mimic-synthetic-check.py"
_matching = "configs/medical/mgca/mgca-matching_r18-minilm_b32-600it_mimic-synthetic-check.py"
_convirt = "configs/medical/convirt/convirt_r18-minilm_b32-600it_mimic-synthetic-check.py"
steps = [
    dict(name="mgca", kind="train", config=_mgca),
    dict(name="mgca_matching", kind="train", config=_matching),
    dict(name="convirt", kind="train", config=_convirt),
    dict(name="mgca_probe", kind="probe", config=_mgca, checkpoint="mgca"),
    dict(name="mgca_matching_probe", kind="probe", config=_matching, checkpoint="mgca_matching"),
    dict(name="convirt_probe", kind="probe", config=_convirt, checkpoint="convirt"),
    dict(name="random_probe", kind="probe", config=_mgca, checkpoint=None),
    dict(name="mgca_grounding", kind="grounding", config=_mgca, checkpoint="mgca"),
    dict(name="mgca_matching_grounding", kind="grounding", config=_matching,
         checkpoint="mgca_matching"),
]

# AUROC as a fraction (0.10 is 10 points); grounding gains are hit rates minus a random
# peak's. The thresholds hold the configuration this project recommends (word matching);
# the published MGCA's rows are reported beside it.
thresholds = [
    dict(name="MGCA (matching) minus random weights, 1 % labels (AUROC)",
         value="mgca_matching_probe.auroc_1pct - random_probe.auroc_1pct", min=0.10),
    dict(name="MGCA (matching) minus ConVIRT, 1 % labels (AUROC)",
         value="mgca_matching_probe.auroc_1pct - convirt_probe.auroc_1pct", min=0.0),
    dict(name="MGCA (matching) minus ConVIRT, 100 % labels (AUROC)",
         value="mgca_matching_probe.auroc_100pct - convirt_probe.auroc_100pct", min=0.0),
    dict(name="effusion side word: attention peak on the finding's side, over chance",
         value="mgca_matching_grounding.effusion_side_side_gain", min=0.0),
    dict(name="opacity side word: attention peak on the finding's side, over chance",
         value="mgca_matching_grounding.opacity_side_side_gain", min=0.0),
]

# --smoke: a small set and 2 iterations per run, to test the sequence (not a result). It
# writes data/checks/ and work_dirs/ under the current folder: run it in a scratch folder.
smoke = dict(data=dict(studies=60, image_size=96), cfg_options=dict(budget_iters=2))

# What `tools/check.py medical --update-zoo` records in the model zoo (AUROC x 1).
_probe = dict(task="Linear probe (5 labels)", dataset="generated MIMIC-CXR validate split",
              data="1,500 generated studies", command="python tools/check.py medical")


def _auroc(step):
    return {f"AUROC {p} %": f"{step}.auroc_{p}pct" for p in (1, 10, 100)}


model_zoo = [
    dict(_probe, metafile="configs/medical/mgca/metafile.yml", collection="MGCA",
         name="mgca_r18-minilm_b32-600it_mimic-synthetic-check", config=_mgca,
         budget="600 it", metrics=_auroc("mgca_probe")),
    dict(_probe, metafile="configs/medical/mgca/metafile.yml", collection="MGCA",
         name="mgca-matching_r18-minilm_b32-600it_mimic-synthetic-check", config=_matching,
         budget="600 it", metrics=dict(
             _auroc("mgca_matching_probe"),
             **{"effusion side word, side hits over chance":
                "mgca_matching_grounding.effusion_side_side_gain"})),
    dict(_probe, metafile="configs/medical/convirt/metafile.yml", collection="ConVIRT",
         name="convirt_r18-minilm_b32-600it_mimic-synthetic-check", config=_convirt,
         budget="600 it", metrics=_auroc("convirt_probe")),
    dict(_probe, metafile="configs/medical/mgca/metafile.yml", collection="MGCA",
         name="random weights (ResNet-18)", config=_mgca, budget="none",
         metrics=_auroc("random_probe")),
]
