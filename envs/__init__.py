"""Environments, one folder per decision problem (installed as ``schedgym.envs``)."""
