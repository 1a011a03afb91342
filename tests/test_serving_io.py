"""LLMServing data: shipped traces load with their published statistics, named datasets split by time without
losing requests, synthetic arrivals have the asked rate and burstiness, and malformed input is refused with
the row and field named."""

from __future__ import annotations

import numpy as np
import pytest

from schedgym import datasets
from schedgym.envs.serving import datasets as sd
from schedgym.envs.serving.generator import gamma_arrivals, sample_classes, synthetic_workload
from schedgym.envs.serving.io import load_sharegpt, load_trace, load_trace_file, parse_azure, parse_mooncake
from schedgym.envs.serving.types import ServingWorkload


@pytest.mark.parametrize("name,rows,span,in_mean,out_mean", [
    ("azure-conv-2023", 19366, 3501.7, 1155, 211.1),
    ("azure-code-2023", 8819, 3435.9, 2048, 27.9),
    ("mooncake-conversation", 12031, 3537.0, 12035, 342.6),
    ("mooncake-synthetic", 3993, 1022.0, 15325, 149.1),
])
def test_shipped_traces_match_their_published_statistics(name, rows, span, in_mean, out_mean):
    w = load_trace(name)
    assert w.n_requests == rows
    assert w.duration == pytest.approx(span, abs=0.1)
    assert w.prompt_tokens.mean() == pytest.approx(in_mean, abs=1)
    assert w.output_tokens.mean() == pytest.approx(out_mean, abs=0.1)
    assert (np.diff(w.arrival) >= 0).all() and w.arrival[0] == 0
    assert (w.prefix_hashes is not None) == name.startswith("mooncake")


def test_mooncake_prefix_hashes_repeat_as_published():
    w = load_trace("mooncake-conversation")
    h = w.prefix_hashes
    _, first = np.unique(h, return_index=True)
    assert 1 - first.size / h.size == pytest.approx(0.366, abs=0.005)  # 36.6 % of block references repeat
    assert w.prefix_block_tokens == 512


def test_sharegpt_statistics():
    p, o = load_sharegpt()
    assert p.size == 30731
    assert p.mean() == pytest.approx(2340, abs=1) and o.mean() == pytest.approx(439, abs=1)


@pytest.mark.parametrize("trace", sorted(sd.TRACES))
def test_time_split_is_ordered_and_complete(trace):
    w = load_trace(trace)
    k = sd.split_index(trace)
    train, test = sd.part(trace, "train"), sd.part(trace, "test")
    assert train.n_requests == k and test.n_requests == w.n_requests - k
    assert w.arrival[k - 1] <= w.arrival[0] + sd.TRAIN_FRACTION * w.duration < w.arrival[k]
    # The test windows cover the test part exactly once, in order (pinned count, nothing dropped).
    names = datasets.get(f"serving/{trace}").names("test")
    assert names == sd.test_windows(trace)
    windows = [datasets.get(f"serving/{trace}").load(n) for n in names]
    assert sum(x.n_requests for x in windows) == test.n_requests
    np.testing.assert_array_equal(np.concatenate([x.prompt_tokens for x in windows]), test.prompt_tokens)
    full = datasets.get(f"serving/{trace}").load(trace)
    assert full.n_requests == w.n_requests


def test_train_stream_draws_windows_from_the_train_part_only():
    ds = datasets.get("serving/azure-conv-2023")
    k = sd.split_index("azure-conv-2023")
    train_prompts = load_trace("azure-conv-2023").prompt_tokens[:k]
    rng = np.random.default_rng(0)
    for _ in range(5):
        w = ds.sample(rng, "train")
        assert w.n_requests == sd.TRAIN_WINDOW and w.arrival[0] == 0
        # the window is a contiguous run of train requests
        starts = np.flatnonzero(train_prompts == w.prompt_tokens[0])
        assert any(np.array_equal(train_prompts[s:s + w.n_requests], w.prompt_tokens) for s in starts)


def test_synthetic_dataset_rates_and_burstiness():
    ds = datasets.get("serving/synthetic-sharegpt-gamma-r8-cv3")
    w = ds.load(ds.names("test")[0])
    gaps = np.diff(w.arrival)
    assert 1 / gaps.mean() == pytest.approx(8, rel=0.3)
    assert gaps.std() / gaps.mean() == pytest.approx(3, rel=0.35)
    assert ds.load(ds.names("test")[0]).arrival.tolist() == w.arrival.tolist()  # fixed test instances
    p = datasets.get("serving/synthetic-azure-code-2023-poisson-r2.5")
    x = p.sample(np.random.default_rng(1), "train")
    assert 1 / np.diff(x.arrival).mean() == pytest.approx(2.5, rel=0.3)
    assert set(x.prompt_tokens.tolist()) <= set(sd.length_samples("azure-code-2023", "train")[0].tolist())
    with pytest.raises(ValueError, match="needs gamma"):
        datasets.get("serving/synthetic-sharegpt-poisson-r1-cv2")
    with pytest.raises(ValueError, match="unknown length source"):
        datasets.get("serving/synthetic-nothing-poisson-r1")


def test_generators_validate_and_are_seeded():
    a = gamma_arrivals(np.random.default_rng(3), 2000, 4.0, 1.0)
    assert a[0] == 0 and (np.diff(a) >= 0).all()
    assert gamma_arrivals(np.random.default_rng(3), 2000, 4.0, 1.0).tolist() == a.tolist()
    with pytest.raises(ValueError, match="rate"):
        gamma_arrivals(np.random.default_rng(0), 10, 0.0, 1.0)
    with pytest.raises(ValueError, match="class_probs"):
        sample_classes(np.random.default_rng(0), 5, (0.5, 0.6))
    w = synthetic_workload(np.random.default_rng(0), np.array([10, 20]), np.array([1, 2]), 50, 3.0)
    assert set(zip(w.prompt_tokens.tolist(), w.output_tokens.tolist(), strict=False)) <= {(10, 1), (20, 2)}
    assert w.scaled(2.0).arrival.tolist() == (w.arrival / 2.0).tolist()


AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


@pytest.mark.parametrize("text,match", [
    ("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.68,10\n", r"missing column\(s\) \['GeneratedTokens'\]"),
    (AZURE_HEADER + "2023-11-16 18:15:46.68,10,5\n2023-11-16 18:15:47.00,-3,5\n",
     "line 3: field 'ContextTokens' = '-3': expected a token count >= 1"),
    (AZURE_HEADER + "2023-11-16 18:15:46.68,ten,5\n", "line 2: field 'ContextTokens' = 'ten': expected an integer"),
    (AZURE_HEADER + "2023-11-16 18:15:46.68,10,\n", "line 2: field 'GeneratedTokens' = '': expected an integer"),
    (AZURE_HEADER + "2023-11-16 18:15:48.00,10,5\n2023-11-16 18:15:47.00,10,5\n",
     "line 3: timestamp goes backwards"),
    (AZURE_HEADER + "yesterday,10,5\n", "line 2: field 'TIMESTAMP' = 'yesterday'"),
    (AZURE_HEADER + "2023-11-16 18:15:48.00,10,0\n",
     "line 2: field 'GeneratedTokens' = '0': expected a token count >= 1"),
])
def test_malformed_azure_rows_are_refused_with_line_and_field(text, match):
    with pytest.raises(ValueError, match=match):
        parse_azure(text, "trace.csv", "t")


@pytest.mark.parametrize("text,match", [
    ('{"timestamp": 0, "input_length": 5}\n', "line 1: missing field 'output_length'"),
    ('{"timestamp": 0, "input_length": 5, "output_length": 2}\nnot json\n', "line 2: not valid JSON"),
    ('{"timestamp": 5, "input_length": 5, "output_length": 2}\n'
     '{"timestamp": 1, "input_length": 5, "output_length": 2}\n',
     "line 2: timestamp goes backwards"),
    ('{"timestamp": 0, "input_length": 5.5, "output_length": 2}\n', "field 'input_length' = 5.5"),
    ('{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": ["a"]}\n',
     "'hash_ids' must be a list of integers"),
    ('{"timestamp": -1, "input_length": 5, "output_length": 2}\n', "'timestamp' = -1: expected milliseconds >= 0"),
])
def test_malformed_mooncake_rows_are_refused_with_line_and_field(text, match):
    with pytest.raises(ValueError, match=match):
        parse_mooncake(text, "trace.jsonl", "t")


def test_trace_files_load_by_format(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text(AZURE_HEADER + "2023-11-16 18:15:46.5,10,5\n2023-11-16 18:15:47.0,20,6\n")
    w = load_trace_file(str(p))
    assert w.n_requests == 2 and w.arrival.tolist() == [0.0, 0.5]
    q = tmp_path / "other.csv"
    q.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="unrecognised trace format"):
        load_trace_file(str(q))


@pytest.mark.parametrize("kwargs,match", [
    ({"arrival": [0.0, 1.0], "prompt_tokens": [1, 0], "output_tokens": [1, 1]}, "request 1 has prompt_tokens=0"),
    ({"arrival": [1.0, 0.5], "prompt_tokens": [1, 1], "output_tokens": [1, 1]}, "arrivals must be sorted; request 1"),
    ({"arrival": [0.0], "prompt_tokens": [1, 2], "output_tokens": [1]}, r"prompt_tokens has shape \(2,\)"),
    ({"arrival": [0.0], "prompt_tokens": [1.5], "output_tokens": [1]}, "prompt_tokens must be integers"),
    ({"arrival": [-1.0], "prompt_tokens": [1], "output_tokens": [1]}, "arrival -1.0"),
])
def test_workload_construction_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ServingWorkload("w", **kwargs)
