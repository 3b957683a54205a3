"""The stabilisation toolbox beyond losses and regularizers: what D sees, the generator EMA, unrolled updates."""
