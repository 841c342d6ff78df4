"""Imported by the expression conversion's fork server before it forks any worker (``multiprocessing``'s
preload, :func:`data_layer.convert.make_pool`): the conversion's compiled loops are loaded there once, so every
worker starts with them instead of loading them itself."""
from data_layer.convert import load_kernels, release_free_memory

load_kernels()
release_free_memory()  # compiling them (a cold numba cache) frees much memory: not for every worker to inherit
