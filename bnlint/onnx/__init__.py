"""ONNX plumbing shared by the front end, fold and drift: element types, tensors in and
out, atomic writes, ONNX Runtime sessions."""
