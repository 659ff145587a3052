"""Seeding, device resolution and the thread policy."""

from __future__ import annotations

import pytest
import torch

from negsamp import repro


def test_same_seed_same_draws():
    repro.seed_everything(123)
    first = torch.rand(5), torch.randn(3)
    repro.seed_everything(123)
    second = torch.rand(5), torch.randn(3)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_seed_everything_returns_seed():
    assert repro.seed_everything(7) == 7


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "3", True])
def test_bad_seed_rejected(bad):
    with pytest.raises(ValueError, match="seed"):
        repro.seed_everything(bad)


def test_resolve_device_cpu_and_auto():
    assert repro.resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert repro.resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_gpu_names_fix():
    with pytest.raises(ValueError, match="device='auto'"):
        repro.resolve_device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "CUDA", "", None])
def test_unknown_device_lists_choices(bad):
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        repro.resolve_device(bad)


def test_unknown_profile_lists_choices():
    with pytest.raises(ValueError, match="quick, full"):
        repro.setup(profile="fast")


def test_thread_policy_one_thread_quick_split_cores_full(monkeypatch):
    monkeypatch.delenv(repro.THREADS_ENV, raising=False)
    assert repro.thread_count(jobs=1, cpus=2) == 1
    assert repro.thread_count(jobs=1, cpus=16, profile="quick") == 1
    assert repro.thread_count(jobs=1, cpus=2, profile="full") == 2
    assert repro.thread_count(jobs=2, cpus=2, profile="full") == 1
    assert repro.thread_count(jobs=4, cpus=2, profile="full") == 1
    assert repro.thread_count(jobs=2, cpus=16, profile="full") == 8
    with pytest.raises(ValueError, match="fast"):
        repro.thread_count(profile="fast")
    monkeypatch.setenv(repro.THREADS_ENV, "3")
    assert repro.thread_count(jobs=2, cpus=2) == 3
    assert repro.thread_count(jobs=2, cpus=2, profile="full") == 3
    monkeypatch.setenv(repro.THREADS_ENV, "0")
    with pytest.raises(ValueError, match=repro.THREADS_ENV):
        repro.thread_count()


def test_setup_context_pick():
    context = repro.setup("full", "cpu", 3)
    assert context.pick(quick=1, full=2) == 2
    assert context.seed == 3
    assert context.device_name == "cpu"
    assert repro.current_context() is context
