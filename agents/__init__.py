"""Learned agents: GNN encoders, SB3 and RLlib glue, ONNX export (installed as ``schedgym.agents``)."""
