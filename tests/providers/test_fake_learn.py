"""
The fake fine-tune's counting (``_learn``, columnar) against the Counter loop it replaced.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

import llmrec.providers.fake as fake


def _reference(
    pairs: list[tuple[set[str], set[str]]], min_count: float, min_z: float
) -> dict[str, tuple[tuple[str, float], ...]]:
    # FakeProvider._train before it counted columnar (kept here as the reference)
    n = len(pairs)
    prompt_count: Counter[str] = Counter()
    answer_count: Counter[str] = Counter()
    joint: Counter[tuple[str, str]] = Counter()
    for prompt_titles, answer_titles in pairs:
        prompt_count.update(prompt_titles)
        answer_count.update(answer_titles)
        joint.update((p, a) for p in prompt_titles for a in answer_titles)
    evidence: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (p, a), count in joint.items():
        expected = prompt_count[p] * answer_count[a] / n
        z = (count - expected) / math.sqrt(expected + 1.0)
        if count >= min_count and z >= min_z:
            evidence[p].append((a, z))
    return {p: tuple(sorted(v)) for p, v in evidence.items()}


_titles = st.sets(st.sampled_from([f"T{i}" for i in range(12)]), max_size=6)
_examples = st.lists(st.tuples(_titles, _titles), max_size=40)


@settings(max_examples=300, deadline=None)
@given(_examples, st.sampled_from([1, 2, 3]), st.sampled_from([-5.0, 0.0, 0.5, 2.0]), st.integers(1, 7))
def test_learn_equals_the_counter_loop(pairs, min_count, min_z, chunk):
    """The same evidence, z-scores bit for bit, whatever the chunk of examples counted at a time."""
    old = fake._LEARN_CHUNK
    fake._LEARN_CHUNK = chunk
    try:
        got = fake._learn(pairs, min_count=min_count, min_z=min_z)
    finally:
        fake._LEARN_CHUNK = old

    assert got == _reference(pairs, min_count, min_z)
    assert all(type(z) is float for v in got.values() for _, z in v)


def test_learn_finds_a_planted_association():
    """Prompt titles that go with one answer title in half the examples are evidence for it only."""
    pairs = [({"A", f"x{i}"}, {"B", f"y{i}"}) for i in range(10)]
    pairs += [({"C", f"w{i}"}, {"D", f"v{i}"}) for i in range(10)]

    got = fake._learn(pairs, min_count=3, min_z=2.0)

    assert {p: [a for a, _ in v] for p, v in got.items()} == {"A": ["B"], "C": ["D"]}
    assert got["A"][0][1] == (10 - 5) / math.sqrt(6)


def test_job_state_is_the_whole_job_without_its_request(tmp_path):
    """Each poll writes the job as unstructuring all of it and dropping the request wrote it."""
    from tests.providers.test_fake import CATALOGUE, _training

    provider = fake.FakeProvider(CATALOGUE, state_dir=tmp_path)
    job = provider.submit_finetune(_training(30))
    for _ in range(3):
        provider.poll_finetune(job)
        state = provider._jobs[job.id]
        want = fake._STATE.unstructure(state)
        request = want.pop("request")

        assert (tmp_path / "jobs" / f"{job.id}.json").read_text() == json.dumps(want, ensure_ascii=False)
        assert json.loads((tmp_path / "requests" / f"{job.id}.json").read_text()) == request
    again = fake.FakeProvider(CATALOGUE, state_dir=tmp_path)
    assert again.poll_finetune(job).model == provider.poll_finetune(job).model is not None
