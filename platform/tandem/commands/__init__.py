"""One module per `tandem` verb: `add_arguments(parser)` and `run(args) -> int`."""
