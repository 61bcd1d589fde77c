"""Deployment: the BN-folded, fused inference path (``fuse``) and ONNX/TorchScript export (``export``)."""
