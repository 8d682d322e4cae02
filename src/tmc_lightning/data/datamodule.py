"""LightningDataModules holding image/text/mask triples for every dataset.

One base class does the work: it reads a layout into samples, decodes and resizes every image
once into memory, tokenises every text once (and its left/right-swapped twin if flips are on),
and serves batches ``{"image", "mask", "input_ids", "attention_mask", "text", "name"}``.
Subclasses only say where the files are.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from tmc_lightning.data import synthetic
from tmc_lightning.data.cache import cached_arrays
from tmc_lightning.data.imageio import check_pair, load_image, load_mask
from tmc_lightning.data.inspect import check_group_pattern
from tmc_lightning.data.labels import MixedBatchSampler, check_fraction, hide_masks
from tmc_lightning.data.layouts import (
    LAYOUTS,
    PROMPT_LEVELS,
    DataError,
    Sample,
    SplitAbsent,
    detect_layout,
    read_manifest,
)
from tmc_lightning.data.prompts import with_prompt_choices
from tmc_lightning.data.samplers import EpochShuffleSampler, ResumableLoader, ShardSampler
from tmc_lightning.data.text import build_wordpiece, encode, load_pretrained
from tmc_lightning.data.transforms import train_transform
from tmc_lightning.data.triples import TripleDataset
from tmc_lightning.errors import MOVED_KEYS, ConfigError, check_keys
from tmc_lightning.paths import cache_root

SPLITS = ("train", "val", "test")
# What "left" in a dataset's texts means: the image's left half (plain), the patient's left
# shown on the image's right (radiographic), or not stated. tmc-data check measures it.
CONVENTIONS = ("plain", "radiographic", "unknown")


class TextSegDataModule(L.LightningDataModule):
    """Base DataModule for any LViT-layout dataset at ``root``."""

    name = "lvit"

    def __init__(
        self,
        root: str | None = None,
        layout: str = "auto",
        image_size: int = 224,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        max_words: int = 24,
        tokenizer: str | None = None,
        augment: bool = True,
        aug_strength: float = 1.0,
        hflip: bool = False,
        seed: int = 0,
        decoded_cache: bool = True,
        text_dropout: float = 0.0,
        convention: str = "unknown",
        generic_prompt: str | None = None,
        group_pattern: str | None = None,
        label_fraction: float = 1.0,
        label_seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= text_dropout < 1.0:
            raise ConfigError(
                f"dataset.text_dropout={text_dropout}: use a probability in [0, 1), e.g. 0.3"
            )
        if convention not in CONVENTIONS:
            raise ConfigError(
                f"dataset.convention={convention!r}: use one of {', '.join(CONVENTIONS)}"
            )
        if group_pattern is not None:
            check_group_pattern(group_pattern)
        check_fraction(label_fraction)
        # Unlabelled images per batch beside batch_size labelled ones: 0 trains on the labelled
        # part alone; semi-supervised methods set it (training/factory.py, data/labels.py).
        self.unlabelled_batch_size = 0
        self.labelled_names: list[str] | None = None
        self.save_hyperparameters()
        self.tokenizer: Tokenizer | None = None
        self.samples: dict[str, list[Sample]] = {}
        self.datasets: dict[str, TripleDataset] = {}

    # -- where the data is -------------------------------------------------------------------
    def resolve_root(self) -> Path:
        if not self.hparams.root:
            raise DataError(f"dataset {self.name!r} needs a root folder: set dataset.root=/path")
        return Path(self.hparams.root).expanduser()

    def read_split(self, split: str) -> list[Sample]:
        root = self.resolve_root()
        layout = self.hparams.layout
        if layout == "auto":
            layout = detect_layout(root)
        if layout not in LAYOUTS:
            raise DataError(f"dataset.layout={layout!r} is unknown; use auto, {', '.join(LAYOUTS)}")
        return LAYOUTS[layout](root, split)

    def has_split(self, split: str) -> bool:
        """Whether ``split`` exists on disk (QaTa's public release, e.g., ships no test split here).

        A split that exists but does not load (a bad sheet, a missing mask) raises its DataError.
        """
        try:
            self.read_split(split)
        except SplitAbsent:
            return False
        return True

    # -- tokenizer --------------------------------------------------------------------------
    def build_tokenizer(self) -> Tokenizer:
        """Built once from the training texts, or the named pretrained tokenizer."""
        if self.tokenizer is None:
            if self.hparams.tokenizer:
                self.tokenizer = load_pretrained(self.hparams.tokenizer)
            else:
                # Every alternative of a prompt level (manifests' p7-p9) gets its words.
                texts = [t for s in self.read_split("train") for t in s.alternatives or (s.text,)]
                self.tokenizer = build_wordpiece(
                    texts + [synthetic.swap_laterality(t) for t in texts]
                )
        return self.tokenizer

    @property
    def vocab_size(self) -> int:
        return self.build_tokenizer().get_vocab_size()

    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer_json": self.build_tokenizer().to_str()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokenizer = Tokenizer.from_str(state["tokenizer_json"])

    # -- Lightning hooks --------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage or "", SPLITS
        )
        # The files first (sheets, then decoding): a wrong root, a broken sheet or an unreadable
        # image is reported before a pretrained tokenizer is looked for (it may need the network).
        todo = {split: self.read_split(split) for split in wanted if split not in self.datasets}
        arrays = {
            split: cached_arrays(samples, hp.image_size, self.decoded_cache_dir(), self._decode)
            for split, samples in todo.items()
        }
        self.build_tokenizer()
        for split, samples in todo.items():
            images, masks = arrays[split]
            labelled = None  # dataset.label_fraction < 1: the training masks kept (labels.py)
            if split == "train" and hp.label_fraction < 1:
                samples, images, masks, labelled = hide_masks(self, samples, images, masks)
            self.samples[split] = samples
            texts = [s.text for s in samples]
            train = split == "train"
            swapped = None
            if train and hp.hflip:
                swapped = encode(
                    self.tokenizer, [synthetic.swap_laterality(t) for t in texts], hp.max_words
                )
            dropout = hp.text_dropout if train else 0.0
            self.datasets[split] = TripleDataset(
                samples,
                images,
                masks,
                encode(self.tokenizer, texts, hp.max_words),
                swapped,
                transform=train_transform(hp.aug_strength) if train and hp.augment else None,
                hflip_p=0.5 if train and hp.hflip else 0.0,
                text_dropout=dropout,
                empty_tokens=encode(self.tokenizer, [""], hp.max_words) if dropout else None,
            )
            self.datasets[split].labelled = labelled
            if train:  # a prompt level with alternatives draws one per item per epoch
                self.datasets[split] = with_prompt_choices(
                    self.datasets[split], samples, self.tokenizer, hp.max_words
                )

    def _decode(self, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
        size = self.hparams.image_size
        for s in samples:
            check_pair(s.image, s.mask)
        images = np.stack([load_image(s.image, size) for s in samples])
        masks = np.stack([load_mask(s.mask, size) for s in samples])
        return images, masks

    def decoded_cache_dir(self) -> Path | None:
        """Where decoded arrays are cached (``dataset.decoded_cache=false`` turns it off)."""
        if not self.hparams.decoded_cache:
            return None
        return cache_root() / "decoded"

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        hp = self.hparams
        bs = hp.batch_size if shuffle else (hp.eval_batch_size or hp.batch_size)
        ds = self.datasets[split]
        # The trainer sets use_distributed_sampler=false (conf/trainer): these samplers shard.
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        if shuffle and getattr(ds, "labelled", None) is not None:  # fewer masks: labels.py
            bs = hp.batch_size + self.unlabelled_batch_size
            sampler = MixedBatchSampler(
                ds.labelled, hp.batch_size, self.unlabelled_batch_size, hp.seed, rank, world
            )
        elif shuffle:
            sampler = EpochShuffleSampler(len(ds), hp.seed, rank, world)
        else:
            sampler = ShardSampler(len(ds), rank, world) if world > 1 else None
        kwargs: dict[str, Any] = {
            "batch_size": bs,
            "sampler": sampler,
            "drop_last": shuffle and len(ds) > bs,
            "num_workers": hp.num_workers,
            "persistent_workers": hp.num_workers > 0,
            "worker_init_fn": _worker_init if hp.num_workers > 0 else None,
            # Page-locked batches copy to the GPU asynchronously; on CPU they would only cost.
            "pin_memory": bool(trainer) and trainer.strategy.root_device.type == "cuda",
        }
        if shuffle and trainer is not None:  # the train loader resumes mid-epoch
            return ResumableLoader(ds, progress=lambda: _progress(trainer), **kwargs)
        return DataLoader(ds, **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def identity(self) -> dict[str, Any]:
        """What a run's metrics.json records about the data: name, root, sizes, content hash."""
        h = hashlib.sha256()
        sizes = {}
        for split, samples in sorted(self.samples.items()):
            sizes[split] = len(samples)
            for s in samples:
                h.update(f"{split}|{s.image.name}|{s.mask.name}|{s.text}\n".encode())
        return {
            "name": self.name,
            "root": str(self.resolve_root()),
            "sizes": sizes,
            "sha256": h.hexdigest()[:16],
        }


def _progress(trainer: L.Trainer) -> tuple[int, int, int]:
    """(epoch, train batches processed in it, train batches per epoch) of a running trainer."""
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    per_epoch = trainer.num_training_batches
    return trainer.current_epoch, done, int(per_epoch) if per_epoch != float("inf") else 2**62


def _worker_init(worker_id: int) -> None:
    """Loader workers ignore Ctrl-C and SIGTERM: the main process stops them after saving."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("PL_SEED_WORKERS") == "1":  # what Lightning would have installed
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


class SyntheticDataModule(TextSegDataModule):
    """The embedded text-guided synthetic chest-radiograph set, generated on first use."""

    name = "synthetic"

    def __init__(
        self,
        n_train: int = 1000,
        n_val: int = 200,
        n_test: int = 200,
        data_seed: int = 0,
        convention: str = "radiographic",
        cache_dir: str | None = None,
        image_size: int = 128,
        **kwargs: Any,
    ) -> None:
        super().__init__(image_size=image_size, convention=convention, **kwargs)
        self.save_hyperparameters()

    def config(self) -> synthetic.SyntheticConfig:
        hp = self.hparams
        keys = ("n_train", "n_val", "n_test", "image_size", "convention")
        return synthetic.SyntheticConfig(seed=hp.data_seed, **{k: hp[k] for k in keys})

    def resolve_root(self) -> Path:
        cache = (
            Path(self.hparams.cache_dir).expanduser() if self.hparams.cache_dir else cache_root()
        )
        return cache / f"synthetic-{self.config().fingerprint()}"

    def prepare_data(self) -> None:
        cache = self.resolve_root().parent
        synthetic.ensure(cache, self.config())

    def read_split(self, split: str) -> list[Sample]:
        if not (self.resolve_root() / "meta.json").is_file():
            self.prepare_data()
        return super().read_split(split)


class QaTaDataModule(TextSegDataModule):
    """QaTa-COV19 in the LViT release layout (masks ``mask_<image>``)."""

    name = "qata"


class MosMedDataModule(TextSegDataModule):
    """MosMedData+ in the LViT layout (masks share the image name)."""

    name = "mosmed"


class ManifestDataModule(TextSegDataModule):
    """Users' own data: a manifest CSV/xlsx with image, mask, text and split columns."""

    name = "custom"

    def __init__(
        self, manifest: str | None = None, prompt: str | None = None, **kwargs: Any
    ) -> None:
        if prompt is not None and prompt not in PROMPT_LEVELS:
            raise ConfigError(
                f"dataset.prompt={prompt!r}: use p0 .. p9 (a column of a manifest written by "
                "tmc-data prepare medvlsm) or null (the 'text' column)"
            )
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def resolve_root(self) -> Path:
        if not self.hparams.manifest:
            raise DataError(f"dataset {self.name!r} needs dataset.manifest=/path/to/manifest.csv")
        return Path(self.hparams.manifest).expanduser()

    def read_split(self, split: str) -> list[Sample]:
        return read_manifest(self.resolve_root(), split, self.hparams.get("prompt"))


class DukeBreastDataModule(ManifestDataModule):
    """Duke-Breast through a manifest (the paper's text annotations are not public)."""

    name = "breast"


DATAMODULES: dict[str, type[TextSegDataModule]] = {
    cls.name: cls
    for cls in (
        SyntheticDataModule,
        QaTaDataModule,
        MosMedDataModule,
        TextSegDataModule,
        ManifestDataModule,
        DukeBreastDataModule,
    )
}


# Dataset-config keys that are not DataModule arguments: the dataset's name and the model preset
# it trains by default (read by the training factory).
RECIPE_KEYS = ("name", "preset")


def datamodule_class(name: str | None) -> type[TextSegDataModule]:
    if name not in DATAMODULES:
        raise ConfigError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(DATAMODULES))} (set dataset=<name>)"
        )
    return DATAMODULES[name]


def datamodule_keys(name: str | None) -> set[str]:
    """Every key a ``dataset=<name>`` config may hold: the DataModule's arguments + the recipe."""
    keys = set(RECIPE_KEYS)
    for cls in datamodule_class(name).__mro__:
        if "__init__" in vars(cls):
            params = inspect.signature(vars(cls)["__init__"]).parameters.values()
            keys |= {p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD} - {"self"}
    return keys


def build_datamodule(name: str, **kwargs: Any) -> TextSegDataModule:
    """A DataModule by dataset name; an unknown name or setting is a :class:`ConfigError`."""
    check_keys(kwargs, datamodule_keys(name) - set(RECIPE_KEYS), "dataset")
    return datamodule_class(name)(**kwargs)


def datamodule_from_config(
    settings: dict[str, Any], tokenizer: str | None = None
) -> TextSegDataModule:
    """The DataModule a ``dataset=`` config section describes (recipe keys left out).

    ``tokenizer``: the pretrained text encoder's, unless the dataset names its own.
    """
    kwargs = {k: v for k, v in settings.items() if k not in RECIPE_KEYS and k not in MOVED_KEYS}
    if tokenizer is not None and not kwargs.get("tokenizer"):
        kwargs["tokenizer"] = tokenizer
    return build_datamodule(settings.get("name"), **kwargs)
