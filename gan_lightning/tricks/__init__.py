"""The stabilisation toolbox beyond losses and regularizers: what D sees (discriminator augmentation, instance noise,
label flipping), the generator EMA, unrolled updates."""
