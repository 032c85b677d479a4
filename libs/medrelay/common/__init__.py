"""Generated protobuf stubs; regenerate with `make proto`."""
