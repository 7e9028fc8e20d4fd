"""mmengine glue: registries, tools support, batch inference, checkpoints."""
