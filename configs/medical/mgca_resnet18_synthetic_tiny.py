# A CPU-sized MGCA run on the synthetic MIMIC-CXR tree, to check the pipeline end to end:
#   python tools/misc/make_synthetic.py medical --out data/synthetic_mimic --studies 64
# Tiny ResNet-18, a randomly initialised 2-layer BERT with a character-level vocabulary
# (no download), 64 px images, a few epochs.
_base_ = ["./mgca_resnet50_mimic.py"]

max_epochs = 3
warmup_epochs = 1
_letters = "abcdefghijklmnopqrstuvwxyz0123456789"
_punctuation = ".,;:()-/"

model = dict(
    image_encoder=dict(depth=18),
    text_encoder=dict(
        _delete_=True, type="ReportTextEncoder", num_layers=2, max_length=112,
        config=dict(model_type="bert", vocab_size=128, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, max_position_embeddings=128),
        # Every word splits into characters: a, ##b, ##c, ...
        vocab=list(_letters) + list(_punctuation) + ["##" + c for c in _letters]),
    hidden_dims=128,
    embed_dims=32,
    prototype_loss=dict(num_prototypes=16),
)

train_pipeline = [
    dict(type="LoadCxrImaged"),
    dict(type="ResizeLongestPadd", size=72),
    dict(type="CxrCropd", size=64, random=True),
    dict(type="CxrNormalized", max_value=255.0),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root="data/synthetic_mimic", pipeline=train_pipeline))

train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=1e-4))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-2, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=max_epochs - warmup_epochs, eta_min=0.0,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=1))
