"""Command lines: one thin module per console command (Hydra or argparse), and the resolvers."""

from tmc_lightning.cli.preload import preload_jemalloc

# Before any command imports torch: with TMC_ALLOCATOR=jemalloc a command starts itself again
# under jemalloc, once (cli/preload.py).
preload_jemalloc()
