"""Multi-network GANs, one module per paper: GMAN (several discriminators) and MGAN (several generators)."""
