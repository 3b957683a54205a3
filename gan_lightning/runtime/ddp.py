"""DDP for GANs: the generator and the discriminator are wrapped in separate DistributedDataParallel instances.

Lightning's DDP wraps the whole LightningModule, so every backward all-reduces the gradients of *both*
networks (and needs ``find_unused_parameters=True``, since each update leaves the other network unused).
Here each backward synchronises only the network being updated: the discriminator update runs D through
its DDP wrapper (G runs under ``no_grad``), the generator update runs G through its wrapper and the frozen D
bare. ``--trainer.strategy=gan_ddp`` selects it; ``--trainer.sync_batchnorm=true`` works with it.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from torch.nn.parallel import DistributedDataParallel

from gan_lightning.runtime import internals


class GANDDPStrategy(DDPStrategy):
    """DDPStrategy that wraps ``generator`` and ``discriminator`` separately (see module docstring)."""

    strategy_name = "gan_ddp"

    def configure_ddp(self) -> None:
        module = self.lightning_module
        if not hasattr(module, "set_distributed_networks"):
            super().configure_ddp()
            return
        device_ids = self.determine_ddp_device_ids()
        stream = torch.cuda.stream(torch.cuda.Stream()) if device_ids is not None else nullcontext()
        with stream:
            kwargs = internals.ddp_kwargs(self)
            generator = DistributedDataParallel(module.generator, device_ids=device_ids, **kwargs)
            discriminator = DistributedDataParallel(module.discriminator, device_ids=device_ids, **kwargs)
        module.set_distributed_networks(generator, discriminator)
        if internals.ddp_comm_hook(self) is not None:
            for net in (generator, discriminator):
                internals.register_ddp_comm_hook(self, net)

    def teardown(self) -> None:
        module = self.lightning_module
        if module is not None and hasattr(module, "set_distributed_networks"):
            module.set_distributed_networks(None, None)
        super().teardown()


StrategyRegistry.register(
    "gan_ddp",
    GANDDPStrategy,
    description="DDP with separate wrappers for the generator and the discriminator",
    process_group_backend=None,
)
