"""Package data: real benchmark instances and traces, each folder with its source README."""
