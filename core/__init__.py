"""The shared dual-stream core: engine glue, pure-PyTorch ops, interaction, alignment and
temporal encoders. Nothing here imports from `interlace.domains`."""
