"""Builders the tests share: configs, data layouts, images, tiny models and encoder folders."""
