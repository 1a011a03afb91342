"""The shipped real programs are what the extractor produces: re-extract one model and compare."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from schedgym.envs.memory.io import load_shipped_program, program_to_dict


@pytest.mark.slow
def test_reextracting_mixer_tiny_reproduces_the_shipped_file(torch):
    from schedgym.envs.memory.extract import extract_named

    prog = extract_named("mixer-tiny")
    fresh = json.loads(json.dumps(program_to_dict(prog)))
    shipped = json.loads(
        resources.files("schedgym.data").joinpath("memory/programs/mixer-tiny.json").read_text()
    )
    assert fresh["spec"] == shipped["spec"]
    assert fresh["buffers"] == shipped["buffers"]
    assert fresh["ops"] == shipped["ops"]
    assert fresh["meta"] == shipped["meta"]


@pytest.mark.slow
def test_extraction_semantics_on_a_two_layer_mlp(torch):
    """Views make no buffers and no ops; weights live from op 0; sizes are numel x 4 bytes; FLOPs counted."""
    from schedgym.envs.memory.extract import extract_program

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Flatten(0), torch.nn.Linear(64, 4)
    )
    prog = extract_program(model, (torch.randn(4, 8),), "mlp")
    targets = [x["target"] for x in prog.meta["op_extra"]]
    assert targets == ["aten.linear.default", "aten.relu.default", "aten.linear.default"]  # flatten is a view
    sizes = dict(zip(prog.buffer_names, prog.buffer_size.tolist(), strict=True))
    assert sizes["0.weight"] == 16 * 8 * 4 and sizes["3.weight"] == 4 * 64 * 4
    lower = dict(zip(prog.buffer_names, prog.buffer_lower.tolist(), strict=True))
    upper = dict(zip(prog.buffer_names, prog.buffer_upper.tolist(), strict=True))
    assert lower["3.weight"] == 0 and upper["3.weight"] == 3
    assert prog.meta["op_extra"][0]["flops"] == 2 * 4 * 8 * 16  # matmul FLOPs from FlopCounterMode
    assert prog.meta["op_extra"][1]["flops"] == 4 * 16  # one per output element
    assert np.isclose(prog.op_compute[0], 2 * 4 * 8 * 16 / 1e5)
    # relu's output is read through the flatten view by the last linear: live [1, 3)
    relu_out = prog.buffer_names[int(prog.access_buffer[(prog.access_op == 1) & prog.access_write][0])]
    assert (lower[relu_out], upper[relu_out]) == (1, 3)
    assert prog.spec.fast_capacity % 1024 == 0


def test_shipped_program_meta_records_the_extraction():
    prog = load_shipped_program("gpt2-tiny")
    assert prog.meta["device_flops_per_ns"] == 1e5 and prog.spec.slow_bandwidth == 1600.0
    assert prog.spec.fast_bandwidth == 16000.0 and prog.meta["torch"].startswith("2.")
