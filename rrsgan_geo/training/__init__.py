"""Training and scoring the generator: the trainer and its config (`trainer`), stage 2's
losses and discriminators (`losses`, `discriminator`, `adversarial`), DDP
(`distributed`), samples and their references (`data`, `reference_synthesis`), scores
as the authors compute them (`evaluation`, `metrics`, `wald` for multispectral
scenes), and cutting training pairs from georeferenced imagery (`dataset_builder`)."""

from rrsgan_geo.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TrainConfig": "trainer",
        "Trainer": "trainer",
        "load_config": "trainer",
        "scored_samples": "trainer",
        "RefSRDataset": "data",
        "find_samples": "data",
        "evaluate": "evaluation",
        "summarise": "evaluation",
        "BuildOptions": "dataset_builder",
        "build_dataset": "dataset_builder",
        "degrade_scene": "wald",
        "spectral_scores": "wald",
    },
)
__all__ = __dir__()
