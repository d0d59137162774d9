"""Pure tensor kernels: row preparation, the tiled pairwise engine and dense differentiable definitions."""
