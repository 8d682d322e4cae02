"""Text-free baseline networks from the paper's comparison table, one file each.

``attunet`` and ``unetpp`` wrap MONAI's implementations; ``transunet`` and ``uctransnet`` are
written here from their papers. All of them ignore the text inputs.
"""
