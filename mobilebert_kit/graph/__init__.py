"""The ONNX graph: torch -> ONNX export, ORT transformer fusion, sessions and feeds, and the
first-token rewrite of the last encoder layer.
"""
