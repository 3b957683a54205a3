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
from lightning.pytorch.overrides.distributed import _register_ddp_comm_hook
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from torch.nn.parallel import DistributedDataParallel


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
            generator = DistributedDataParallel(module.generator, device_ids=device_ids, **self._ddp_kwargs)
            discriminator = DistributedDataParallel(module.discriminator, device_ids=device_ids, **self._ddp_kwargs)
        module.set_distributed_networks(generator, discriminator)
        if self._ddp_comm_hook is not None:
            for net in (generator, discriminator):
                _register_ddp_comm_hook(
                    model=net,
                    ddp_comm_state=self._ddp_comm_state,
                    ddp_comm_hook=self._ddp_comm_hook,
                    ddp_comm_wrapper=self._ddp_comm_wrapper,
                )

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
