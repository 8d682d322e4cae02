"""Command lines: one thin module per console command (Hydra or argparse), and the resolvers."""

from tmc_lightning.cli.preload import preload_jemalloc

# Before any command imports torch: a command that can run under jemalloc starts itself again
# under it, once (cli/preload.py; TMC_ALLOCATOR=glibc turns it off).
preload_jemalloc()
