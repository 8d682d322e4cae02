"""Command lines: one thin module per console command (Hydra or argparse), and the resolvers."""
