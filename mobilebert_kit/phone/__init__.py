"""What the phone runs, checked here: side onnxruntime versions (the apps' pins), ARM64 under QEMU,
the golden self-test rule the apps mirror, and the parity harness (incl. the onnxruntime-node runner).
"""
