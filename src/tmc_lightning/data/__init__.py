"""Data: dataset layouts read into (image, mask, text) samples, decoded, tokenised and batched."""
