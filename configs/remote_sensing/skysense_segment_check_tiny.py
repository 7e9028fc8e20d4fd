# The tiny SkySense segmentor as tools/remote_sensing_check.py fine-tunes it (the script
# drives the loop; these are the model and optimiser settings it reads).
_base_ = ["./skysense_segment_synthetic_tiny.py"]
