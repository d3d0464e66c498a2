"""BN statistics and graph walks the rules share: every BN's parameters read once,
vectorised screens, weight maxima, the NumPy reference BatchNorm, the batch-coupling probe."""
