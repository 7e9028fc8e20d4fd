# tools/infer.py with fault-injecting IO (tests/faults/fault_io.py) on the toy regressor.
_base_ = ["../fixtures/toy_config.py"]
custom_imports = dict(imports=["tests.fixtures.toy", "tests.faults.fault_io"],
                      allow_failed_imports=False)
infer_cfg = dict(reader=dict(type="PacedTensorReader"), writer=dict(type="FaultyJsonWriter"))
