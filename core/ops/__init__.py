"""Pure-PyTorch ops that run on CPU and GPU with no compiled extension."""
