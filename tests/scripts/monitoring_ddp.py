"""Train a tiny GAN with every monitoring callback under DDP (2 CPU processes, gloo).

Run as a script: Lightning's ``ddp`` launcher re-runs ``sys.argv`` for the second process, which would re-run
pytest itself. Usage: ``python tests/scripts/monitoring_ddp.py OUTPUT_DIR``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for conftest's helpers

from conftest import tiny_gan, tiny_ring  # noqa: E402
from lightning.pytorch import Trainer, seed_everything  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from gan_lightning.callbacks import (  # noqa: E402
    BalanceDiagnosticsCallback,
    LossCurvesCallback,
    SampleGridCallback,
    TimelapseCallback,
)


def main(out: Path) -> None:
    seed_everything(0)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_find_unused_parameters_true",
        max_steps=20,
        log_every_n_steps=10,
        logger=TensorBoardLogger(out / "logs", name="ddp", default_hp_metric=False),
        default_root_dir=out,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[SampleGridCallback(every_n_steps=10, num_samples=200), TimelapseCallback(), LossCurvesCallback(), BalanceDiagnosticsCallback()],
    )
    trainer.fit(tiny_gan(), tiny_ring(batch_size=16))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
