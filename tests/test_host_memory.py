"""host_memory.keep_freed_memory: glibc's thresholds raised on the CPU backend only."""

import ctypes
import ctypes.util
import sys
import types

import jax
import pytest

from pix2pixhd_jax.runtime import host_memory


def glibc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").gnu_get_libc_version is not None
    except (OSError, AttributeError):
        return False


def test_not_applied_on_accelerators(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    calls = []
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: calls.append(a))
    assert host_memory.keep_freed_memory() is False
    assert calls == []


def test_environment_opts_out(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.setenv("PIX2PIXHD_KEEP_HOST_MEMORY", "0")
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: pytest.fail("mallopt called despite the opt-out"))
    assert host_memory.keep_freed_memory() is False


def test_applied_once_on_cpu_with_glibc(monkeypatch):
    if not (sys.platform.startswith("linux") and glibc()):
        pytest.skip("needs Linux with glibc (mallopt)")
    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.delenv("PIX2PIXHD_KEEP_HOST_MEMORY", raising=False)
    assert jax.default_backend() == "cpu"
    assert host_memory.keep_freed_memory() is True
    # Once set, later calls do not reload the C library.
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: pytest.fail("mallopt called twice"))
    assert host_memory.keep_freed_memory() is True


def test_refused_mallopt_is_reported_not_raised(monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")

    def mallopt(option, value):
        return 0  # glibc's answer for a rejected value

    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.delenv("PIX2PIXHD_KEEP_HOST_MEMORY", raising=False)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: types.SimpleNamespace(mallopt=mallopt))
    assert host_memory.keep_freed_memory() is False
    assert host_memory._applied is False
