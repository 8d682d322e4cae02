"""Joint image/mask augmentation that keeps the text true.

Affine jitter, brightness/contrast and noise move lungs and lesions together, so zone names stay
correct. A horizontal flip would swap the patient's sides; it is off by default and, when
enabled, the dataset swaps "left" and "right" in the text as it flips (see ``datamodule.py``).
"""

from __future__ import annotations

import albumentations as A
import cv2


def train_transform(strength: float = 1.0) -> A.Compose:
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
