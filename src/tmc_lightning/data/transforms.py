"""The image-to-model-input function, and joint image/mask augmentation that keeps the text true.

:func:`image_to_tensor` is the only place a decoded image becomes network input: the
DataModule (training and evaluation) and the predictor (``tmc-predict``, ``tmc-explain``) call
it, so they cannot drift apart. (The nnU-Net export writes decoded gray images, not inputs.)


Affine jitter, brightness/contrast and noise move lungs and lesions together, so zone names stay
correct. A horizontal flip would swap the patient's sides; it is off by default and, when
enabled, the dataset swaps "left" and "right" in the text as it flips (see ``datamodule.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from tmc_lightning.data.imageio import resize_gray

if TYPE_CHECKING:
    import albumentations as A

# Gray uint8 -> [-1, 1]: (x / 255 - MEAN) / STD, the same for every model and dataset.
MEAN, STD = 0.5, 0.5


def image_to_tensor(gray: np.ndarray) -> torch.Tensor:
    """A gray uint8 image (H, W), already at the model's size -> its input (3, H, W) float32.

    Normalised to [-1, 1] and replicated to three channels (the encoders are RGB models).
    """
    gray = np.ascontiguousarray(gray)
    if not gray.flags.writeable:  # e.g. np.asarray of a PIL image: torch wants to own a copy
        gray = gray.copy()
    x = torch.from_numpy(gray).float().div_(255).sub_(MEAN).div_(STD)
    return x[None].expand(3, -1, -1).contiguous()


def model_input(gray: np.ndarray, size: int) -> torch.Tensor:
    """A decoded gray uint8 image of any size -> the model's (3, size, size) input.

    The same resize the decoded cache applies (:func:`~tmc_lightning.data.imageio.resize_gray`),
    then :func:`image_to_tensor`.
    """
    return image_to_tensor(resize_gray(gray, size))


def train_transform(strength: float = 1.0) -> A.Compose:
    """The training augmentation (albumentations, imported only when augmentation is on)."""
    import albumentations as A
    import cv2

    s = strength
    return A.Compose(
        [
            A.Affine(
                scale=(1 - 0.1 * s, 1 + 0.1 * s),
                translate_percent=(-0.05 * s, 0.05 * s),
                rotate=(-10 * s, 10 * s),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                p=0.7,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.15 * s, contrast_limit=0.15 * s, p=0.5),
            A.GaussNoise(std_range=(0.0, 0.03 * s), p=0.3),
        ]
    )
