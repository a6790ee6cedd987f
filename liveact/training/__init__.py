"""Training the built-in tiny model: VAE, Neighbor Forcing DiT, ConvKV stage (``liveact train``).

* ``config``           - ``TrainConfig``: one JSON file per run, the settings of every stage.
* ``vae_stage``        - the tiny Wan-architecture VAE on clip windows.
* ``encoded``          - every clip to latents, conditioning and audio rows, once.
* ``neighbor_forcing`` - the rollout loss: chunk n at level t attends to chunk n-1 at level t.
* ``dit_stage``        - the DiT stages (``nf``, ``convkv``) around that loss.
* ``loop``, ``curves`` - the optimiser loop, progress bar and loss curves (CSV + PNG).
* ``run``              - the stages in order, in one run directory.
"""

from liveact.training.config import STAGES, DitStageConfig, OptimConfig, TrainConfig, VaeStageConfig

__all__ = ["STAGES", "DitStageConfig", "OptimConfig", "TrainConfig", "VaeStageConfig"]
