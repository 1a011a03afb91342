"""MemoryMapping-v0 and MemoryOffsets-v0: dynamics, masks, rewards, options, rendering, bad configuration."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.envs.memory.io import load_minimalloc
from schedgym.envs.memory.types import MemoryProgram, MemorySpec, OffsetInstance
from schedgym.envs.memory.validator import validate_mapping

MAPPING = "schedgym/MemoryMapping-v0"
OFFSETS = "schedgym/MemoryOffsets-v0"


def tiny(capacity: int = 100) -> MemoryProgram:
    """op0 (5 ns) reads w (40 B), x (20 B), writes y (30 B); op1 (100 ns) reads w, y.
    Slow memory 1 B/ns, fast 10 B/ns."""
    return MemoryProgram(
        "tiny",
        MemorySpec(capacity, 10.0, 1.0),
        [5.0, 100.0],
        [40, 20, 30],
        [0, 0, 0],
        [2, 1, 2],
        [0, 0, 0, 1, 1],
        [0, 1, 2, 0, 2],
        [False, False, True, False, False],
        ("w", "x", "y"),
    )


# ---------------------------------------------------------------------------------------------- MemoryMapping
def test_mapping_episode_on_a_hand_checked_program():
    env = gym.make(MAPPING, instance=tiny(), order="start")
    obs, info = env.reset(seed=0)
    base = env.unwrapped
    # start order: lower all 0; ties by larger size: w (40), y (30), x (20)
    assert base.state.order.tolist() == [0, 2, 1]
    assert base.action_space.n == 2 and base.slow_action == 1
    assert obs["action_node"].tolist() == [2, 2]  # both actions concern buffer w: node max_ops + 0
    rewards = []
    for a in (0, 0, 1):  # w fast, y fast, x slow
        obs, r, term, trunc, info = env.step(a)
        rewards.append(r)
    assert term and not trunc
    # w at 0 (40 B), y at 40 (30 B): op0 max(5, 7/1 ... ) = max(5, 4 + 3 + 20) = 27; op1 max(100, 4 + 3) = 100
    assert info["exec_time"] == 127.0 and info["all_slow_time"] == 190.0
    assert sum(rewards) == pytest.approx((190.0 - 127.0) / 190.0)
    assert rewards[2] == 0.0
    assert base.schedule().offset.tolist() == [0, -1, 40]
    assert base.validate()["exec_time"] == info["exec_time"]


def test_fast_action_is_masked_when_the_buffer_does_not_fit():
    env = gym.make(MAPPING, instance=tiny(capacity=50), order="start")
    _, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [1, 1]
    _, _, _, _, info = env.step(0)  # w (40 B) fast; y (30 B) no longer fits in 50 B while w lives
    assert info["action_mask"].tolist() == [0, 1]
    _, r, term, _, info = env.step(0)
    assert info["invalid_action"] and r == -1.0 and not term
    strict = gym.make(MAPPING, instance=tiny(capacity=50), order="start", strict=True)
    strict.reset(seed=0)
    strict.step(0)
    with pytest.raises(
        ValueError, match=r"action 0 is masked out \(buffer 2 does not fit .*\); valid actions: \[1\]"
    ):
        strict.step(0)


def test_offset_choice_exposes_candidates_and_places_at_the_chosen_one():
    env = gym.make(MAPPING, instance=tiny(), order="start", offset_choice=3)
    _, info = env.reset(seed=0)
    base = env.unwrapped
    assert base.action_space.n == 4 and base.slow_action == 3
    assert base.candidates() == [0] and info["action_mask"].tolist() == [1, 0, 0, 1]
    env.step(0)  # w at 0
    assert base.candidates() == [40]  # y overlaps w: only the gap above it
    env.step(3)  # y slow
    assert base.candidates() == [40]  # x overlaps w only
    env.step(0)
    assert base.schedule().offset.tolist() == [0, 40, -1]


def test_mapping_orders_and_fit_rules_are_validated():
    for kw, match in (
        ({"order": "random"}, "order must be one of"),
        ({"fit": "worst"}, "fit must be one of"),
        ({"offset_choice": 0}, "offset_choice must be >= 1"),
    ):
        with pytest.raises(ValueError, match=match):
            gym.make(MAPPING, instance=tiny(), **kw)
    with pytest.raises(TypeError, match=r"unknown config keys \['bogus'\]"):
        gym.make(MAPPING, config={"bogus": 1})


def test_rllib_style_config_dict_works():
    env = gym.make(MAPPING, config={"dataset": "memory/random-programs-12", "order": "size"})
    env.reset(seed=0)
    assert env.unwrapped.order == "size" and env.unwrapped.padding["ops"] == 12


def test_real_program_by_name_and_greedy_fast_bounds():
    env = gym.make(MAPPING, instance="gpt2-tiny")
    _, info = env.reset(seed=0)
    while True:
        a = 0 if info["action_mask"][0] else env.unwrapped.slow_action  # fast whenever it fits
        _, _, term, _, info = env.step(a)
        if term:
            break
    assert info["all_fast_time"] <= info["exec_time"] < info["all_slow_time"]
    res = env.unwrapped.validate()
    assert (
        res["exec_time"] == info["exec_time"]
        and res["fast_peak"] <= env.unwrapped.instance.spec.fast_capacity
    )


def test_reset_with_an_instance_that_exceeds_the_padding_raises():
    env = gym.make(MAPPING, dataset="memory/random-programs-10")
    big = gym.make(MAPPING, dataset="memory/random-programs-30").unwrapped
    big.reset(seed=0)
    with pytest.raises(ValueError, match=r"does not fit the padding: ops 30 > 10"):
        env.reset(seed=0, options={"instance": big.instance})
    with pytest.raises(TypeError, match="must be a MemoryProgram"):
        env.reset(options={"instance": "gpt2-tiny"})


def test_mapping_observation_graph():
    env = gym.make(MAPPING, instance=tiny(), order="start")
    obs, _ = env.reset(seed=0)
    nf = obs["node_features"]
    assert obs["node_mask"].tolist() == [1, 1, 1, 1, 1]
    assert nf[:2, 0].tolist() == [1, 1] and nf[2:, 1].tolist() == [1, 1, 1]
    n_acc = 5
    ei = obs["edge_index"][:, :n_acc]
    assert sorted(zip(ei[0].tolist(), ei[1].tolist(), strict=True)) == [
        (2, 0),
        (2, 1),
        (3, 0),
        (4, 0),
        (4, 1),
    ]
    assert obs["edge_index"][:, n_acc].tolist() == [0, 1] and obs["edge_mask"].sum() == n_acc + 1


def test_render_modes():
    env = gym.make(MAPPING, instance=tiny(), render_mode="rgb_array")
    env.reset(seed=0)
    env.step(0)
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and (img < 250).any()
    txt = gym.make(MAPPING, instance=tiny(), render_mode="ansi")
    txt.reset(seed=0)
    assert "tiny: 0/3 buffers decided" in txt.render()
    from schedgym.envs.memory.env import MemoryMappingEnv

    with pytest.raises(ValueError, match="render_mode must be one of"):
        MemoryMappingEnv(render_mode="human")


# ---------------------------------------------------------------------------------------------- MemoryOffsets
def test_offsets_episode_places_at_the_skyline_and_returns_minus_peak():
    inst = OffsetInstance("x", [0, 2, 1, 5], [3, 6, 4, 8], [4, 2, 3, 1], 8)
    env = gym.make(OFFSETS, instance=inst)
    obs, info = env.reset(seed=0)
    total = 0.0
    for b in (0, 1, 3, 2):
        obs, r, term, _, info = env.step(b)
        total += r
    # 0 at 0 (top 4); 1 overlaps 0: at 4 (top 6); 3 overlaps 1: at 6 (top 7);
    # 2 overlaps 0 and 1: at 6 -> top 9
    assert env.unwrapped.schedule().offsets.tolist() == [0, 4, 6, 6]
    assert term and info["peak"] == 9 and info["fits"] == 0 and info["capacity_ratio"] == 9 / 8
    assert total == pytest.approx(-9 / 8)
    assert env.unwrapped.validate()["peak"] == 9


def test_offsets_mask_and_capacity_mask():
    inst = OffsetInstance("x", [0, 0, 0], [2, 2, 2], [5, 4, 3], 8)
    env = gym.make(OFFSETS, instance=inst)
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(0)
    assert info["action_mask"].tolist() == [0, 1, 1]
    _, r, _, _, info2 = env.step(0)
    assert info2["invalid_action"] and r == -1.0
    capped = gym.make(OFFSETS, instance=inst, capacity_mask=True)
    capped.reset(seed=0)
    _, _, _, _, info = capped.step(0)  # top 5: buffer 1 (4 B) would reach 9 > 8, buffer 2 (3 B) reaches 8
    assert info["action_mask"].tolist() == [0, 0, 1]
    _, _, _, _, info = capped.step(2)  # now nothing fits: every unplaced buffer is allowed (overflow)
    assert info["action_mask"].tolist() == [0, 1, 0]


def test_offsets_observation_sections():
    inst = OffsetInstance("x", [0, 2], [3, 6], [4, 2], 8)
    env = gym.make(OFFSETS, instance=inst)
    obs, _ = env.reset(seed=0)
    base = env.unwrapped
    assert base.padding == {"buffers": 2, "sections": 3, "cover": 4}
    nf = obs["node_features"]
    # sections [0,2) [2,3) [3,6); remaining sizes 4, 6, 2 (of capacity 8)
    assert nf[:3, 3].tolist() == [0.5, 0.75, 0.25]
    obs, *_ = env.step(0)
    assert obs["node_features"][:3, 2].tolist() == [0.5, 0.5, 0.0]  # floors after buffer 0 (top 4)
    assert obs["node_features"][4, 11] == 0.5  # buffer 1's skyline offset: 4 / 8


def test_minimalloc_instance_by_name_and_csv_path(tmp_path):
    env = gym.make(OFFSETS, instance="example")
    env.reset(seed=0)
    for b in (4, 2, 3, 0, 1):  # b5 at 0, b3 and b4 at 4, b1 and b2 at 8: the README's solution
        *_, term, _, info = env.step(b)
    assert info["peak"] == 12 and env.unwrapped.schedule().offsets.tolist() == [8, 8, 4, 4, 0]
    p = tmp_path / "mine.20.csv"
    p.write_text("id,lower,upper,size\na,0,4,5\nb,2,6,5\n")
    env2 = gym.make(OFFSETS, instance=str(p))
    env2.reset(seed=0)
    assert env2.unwrapped.instance.capacity == 20


def test_offsets_render():
    env = gym.make(OFFSETS, instance=load_minimalloc("example"), render_mode="rgb_array")
    env.reset(seed=0)
    env.step(4)
    img = env.render()
    assert img.ndim == 3 and (img < 250).any()


def test_building_and_running_an_env_does_not_import_torch():
    code = (
        "import sys, gymnasium as gym, schedgym\n"
        "for eid in ('schedgym/MemoryMapping-v0', 'schedgym/MemoryOffsets-v0'):\n"
        "    e = gym.make(eid); e.reset(seed=0); e.step(int(e.unwrapped.action_masks().argmax()))\n"
        "e = gym.make('schedgym/MemoryMapping-v0', instance='gpt2-tiny'); e.reset(seed=0)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_mapping_episode_matches_validator_on_random_programs():
    env = gym.make(MAPPING)
    rng = np.random.default_rng(0)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        while True:
            a = int(rng.choice(np.flatnonzero(info["action_mask"])))
            _, _, term, _, info = env.step(a)
            if term:
                break
        base = env.unwrapped
        assert validate_mapping(base.instance, base.schedule())["exec_time"] == info["exec_time"]


# ---------------------------------------------------------------------------------------------- offset mode
def test_offset_mode_candidates_are_gap_bottoms_in_the_fixed_order():
    # sizes 5, 4, 3 live together over [0, 2), then 2 over [1, 3); size order: 0, 1, 2, 3
    inst = OffsetInstance("x", [0, 0, 0, 1], [2, 2, 2, 3], [5, 4, 3, 2], 16)
    env = gym.make(OFFSETS, instance=inst, action_mode="offset", max_candidates=3)
    _, info = env.reset(seed=0)
    base = env.unwrapped
    assert base.action_space.n == 3 and base.candidates() == [0] and info["action_mask"].tolist() == [1, 0, 0]
    env.step(0)  # buffer 0 at 0
    assert base.candidates() == [5]
    env.step(0)  # buffer 1 at 5
    assert base.candidates() == [9]
    env.step(0)  # buffer 2 at 9 (top 12)
    # buffer 3 [1,3) overlaps all three: only above 12
    assert base.candidates() == [12]
    *_, term, _, info = env.step(0)
    assert term and info["peak"] == 14 and base.schedule().offsets.tolist() == [0, 5, 9, 12]


def test_offset_mode_keeps_the_gap_above_everything_among_few_candidates():
    inst = OffsetInstance("x", [0, 2, 4, 0], [1, 3, 5, 5], [2, 2, 2, 1], 8)
    env = gym.make(OFFSETS, instance=inst, action_mode="offset", order="start", max_candidates=2)
    env.reset(seed=0)
    base = env.unwrapped
    # start order (ties: larger first): 0 [0,1) size 2, 3 [0,5) size 1, 1 [2,3), 2 [4,5)
    assert base.state.order.tolist() == [0, 3, 1, 2]
    env.step(0)  # 0 at 0
    assert base.candidates() == [2] and base.candidate_gaps()[0] > 1e9  # 3 overlaps 0: the gap above it
    env.step(0)  # 3 at 2 (top 3)
    assert base.candidates() == [0, 3]  # 1 [2,3): gap [0,2) below buffer 3, or above it
    assert base.candidate_gaps()[0] == 2
    env.step(1)
    assert base.schedule().offsets.tolist() == [0, 3, -1, 2]


@pytest.mark.parametrize("pol, order", [("tflite_bestfit", "size"), ("firstfit_start", "start")])
def test_greedy_planners_replay_exactly_in_offset_mode_with_their_own_order(pol, order):
    from schedgym.evaluation import run_episode
    from schedgym.policy import make_policy

    inst = load_minimalloc("A")
    policy = make_policy(OFFSETS, pol)
    row = run_episode(
        OFFSETS, policy, inst, 0, env_kwargs={"action_mode": "offset", "order": order, "max_candidates": 64}
    )
    assert policy.info["deviations"] == 0
    assert row["schedule"]["offsets"] == policy.plan_offsets(inst).tolist()


def test_offset_mode_random_masked_episodes_validate():
    env = gym.make(OFFSETS, action_mode="offset", max_candidates=4)
    rng = np.random.default_rng(0)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        while True:
            obs, _, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
            assert env.observation_space.contains(obs) and not trunc
            if term:
                break
        assert env.unwrapped.validate()["peak"] == info["peak"]


def test_offset_mode_bad_arguments_and_strict_message():
    for kw, match in (
        ({"action_mode": "pick"}, "action_mode must be one of"),
        ({"order": "area"}, "order must"),
        ({"max_candidates": 0}, "max_candidates must be >= 1"),
    ):
        with pytest.raises(ValueError, match=match):
            gym.make(OFFSETS, instance="example", **kw)
    env = gym.make(OFFSETS, instance="example", action_mode="offset", strict=True)
    env.reset(seed=0)
    with pytest.raises(
        ValueError,
        match=r"action 3 is masked out \(the current buffer has 1 candidate offsets\); "
        r"valid actions: \[0\]",
    ):
        env.step(3)


def test_ordered_state_truncates_candidates_to_the_lowest_and_the_top():
    from schedgym.envs.memory.sim import OrderedOffsetState

    inst = OffsetInstance("x", [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], 8)
    st = OrderedOffsetState(inst, np.arange(4))
    for off in (0, 3, 6):
        st.place(off)
    assert [o for o, _ in st.candidates(5)] == [1, 4, 7]
    assert [o for o, _ in st.candidates(2)] == [1, 7] and st.candidates(2)[0][1] == 2
    assert [o for o, _ in st.candidates(1)] == [7]
