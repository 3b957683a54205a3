"""Stabilisation tricks for GAN training, one idea per module (discriminator augmentation: ``augment``, ``ada``)."""
