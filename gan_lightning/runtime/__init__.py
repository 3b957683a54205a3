"""Plumbing between the GAN loop and Lightning/PyTorch: step counting, per-network loss scalers, RNG state,
exact resume, non-finite guards, DDP with one wrapper per network and atomic checkpoints.

Every use of a private Lightning or PyTorch API lives in :mod:`gan_lightning.runtime.internals`.
"""
