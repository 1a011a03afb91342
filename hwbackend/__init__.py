"""The live backend: real engines on torch, Ray actors, profiler (installed as ``schedgym.hwbackend``)."""
