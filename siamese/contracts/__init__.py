"""The contracts between stages: the input spec, and what an ONNX model says about itself
(image and text towers, pairs)."""
