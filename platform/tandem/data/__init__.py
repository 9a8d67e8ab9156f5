"""Datasets: the project's own task, example-file loading into Ray Data, tokenizing and packing."""
