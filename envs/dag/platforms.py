"""The embedded platforms: a DS3-like SoC, a small GPU cluster, and the Topcuoglu et al. 3-processor system.

Numbers marked "DS3" are the WiFi-TX/RX latencies quoted from Arda et al., "DS3: A System-Level Domain-
Specific System-on-Chip Simulation Framework", IEEE Trans. Computers 69(8), 2020 (A7 / A15 / accelerator,
in microseconds). Everything else (matrix-multiply times, link speeds, the cluster) is illustrative: round
numbers of the right order of magnitude, documented here so a study can replace them.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from schedgym.envs.dag.types import INF, Platform

X = INF  # unsupported


def _links(
    groups: list[int], lat_in: float, bw_in: float, lat_out: float, bw_out: float
) -> tuple[np.ndarray, np.ndarray]:
    """Latency and bandwidth matrices: one speed inside a group of PEs, another between groups."""
    g = np.asarray(groups)
    same = g[:, None] == g[None, :]
    return np.where(same, lat_in, lat_out), np.where(same, bw_in, bw_out)


@cache
def soc() -> Platform:
    """DS3-like SoC, 8 PEs: 2 Arm A15 (big), 2 Arm A7 (LITTLE), 2 FFT, 1 Viterbi and 1 matrix accelerator.

    Times in microseconds per unit of work; data in bytes. CPU cores share a 1000 B/us bus (1 us start-up);
    transfers to or from an accelerator go over a 100 B/us DMA link (2 us start-up).
    """
    pe_type_names = ("A15", "A7", "FFT", "VIT", "MM")
    pe_names = ("A15-0", "A15-1", "A7-0", "A7-1", "FFT-0", "FFT-1", "VIT-0", "MM-0")
    pe_type = [0, 0, 1, 1, 2, 2, 3, 4]
    table = {  # task type: (A15, A7, FFT, VIT, MM)
        "scrambler": (10, 22, X, X, X),  # DS3 scrambler-encoder (its accelerator is not on this SoC)
        "interleaver": (4, 10, X, X, X),  # DS3 WiFi-TX interleaver
        "modulation": (8, 15, X, X, X),  # DS3 QPSK modulation
        "crc": (3, 5, X, X, X),  # DS3 CRC
        "fft": (118, 296, 16, X, X),  # DS3 IFFT
        "viterbi": (738, 1828, X, 2, X),  # DS3 Viterbi decoder
        "matmul": (160, 400, X, X, 20),  # illustrative
    }
    lat, bw = _links([0, 0, 0, 0, 1, 2, 3, 4], 1.0, 1000.0, 2.0, 100.0)
    return Platform(
        "soc",
        pe_names,
        np.array(pe_type),
        pe_type_names,
        tuple(table),
        np.array(list(table.values()), float),
        lat,
        bw,
        time_unit="us",
        data_unit="B",
        description="DS3-like SoC: 2 big + 2 LITTLE cores, 2 FFT, 1 Viterbi, 1 matrix accelerator",
    )


@cache
def cluster() -> Platform:
    """Small GPU cluster, 8 PEs on 2 nodes: node 0 = 2 CPU workers + 2 A100-class GPUs, node 1 = 2 CPU
    workers + 2 T4-class GPUs. Seconds per unit of work; bytes. Inside a node 10 us + 16 GB/s (PCIe 4 x16);
    between nodes 100 us + 1.25 GB/s (10 GbE).
    """
    pe_type_names = ("cpu", "a100", "t4")
    pe_names = ("cpu-0", "cpu-1", "a100-0", "a100-1", "cpu-2", "cpu-3", "t4-0", "t4-1")
    pe_type = [0, 0, 1, 1, 0, 0, 2, 2]
    table = {  # task type: (cpu, a100, t4)
        "preprocess": (1.0, X, X),
        "io": (1.0, X, X),
        "train": (20.0, 1.0, 3.0),
        "inference": (6.0, 0.5, 1.0),
        "gpu_kernel": (X, 1.0, 2.5),
        "postprocess": (1.0, 1.5, 1.5),
    }
    lat, bw = _links([0, 0, 0, 0, 1, 1, 1, 1], 1e-5, 16e9, 1e-4, 1.25e9)
    return Platform(
        "cluster",
        pe_names,
        np.array(pe_type),
        pe_type_names,
        tuple(table),
        np.array(list(table.values()), float),
        lat,
        bw,
        time_unit="s",
        data_unit="B",
        description="2 nodes: 4 CPU workers, 2 A100-class and 2 T4-class GPUs",
    )


# Task-type mix the random generators draw from, per platform (probabilities in table order).
TYPE_MIX: dict[str, dict[str, float]] = {
    "soc": {
        "scrambler": 0.15,
        "interleaver": 0.15,
        "modulation": 0.15,
        "crc": 0.1,
        "fft": 0.2,
        "viterbi": 0.1,
        "matmul": 0.15,
    },
    "cluster": {
        "preprocess": 0.25,
        "io": 0.1,
        "train": 0.15,
        "inference": 0.2,
        "gpu_kernel": 0.1,
        "postprocess": 0.2,
    },
}

PLATFORMS = {"soc": soc, "cluster": cluster}


def get_platform(name: str) -> Platform:
    """An embedded platform by name."""
    if name not in PLATFORMS:
        raise ValueError(f"unknown platform {name!r}; expected one of {sorted(PLATFORMS)}")
    return PLATFORMS[name]()


def mean_comm(platform: Platform) -> tuple[float, float]:
    """(mean latency, mean inverse bandwidth) over ordered pairs of distinct PEs; (0, 0) with one PE.

    The average communication cost of an edge carrying ``d`` is ``lat + d * inv_bw`` (HEFT's c-bar).
    """
    p = platform.n_pes
    if p < 2:
        return 0.0, 0.0
    off = ~np.eye(p, dtype=bool)
    return float(platform.latency[off].mean()), float((1.0 / platform.bandwidth[off]).mean())
