"""trainer.precision=auto: chosen from the hardware, an explicit value always wins."""

import pytest
import torch

from tmc_lightning.training import precision as P


def test_an_explicit_precision_always_wins(monkeypatch):
    monkeypatch.setattr(P, "cpu_bf16_reason", lambda: "CPU has amx_bf16")
    assert P.choose_precision("32-true", "cpu") == ("32-true", "set explicitly (trainer.precision)")
    assert P.choose_precision("16-mixed", "gpu")[0] == "16-mixed"


@pytest.mark.parametrize(
    ("flags", "capability", "expected"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "AVX512", "bf16-mixed"),
        ({"avx2", "amx_bf16", "amx_tile"}, "AVX512", "bf16-mixed"),
        ({"avx2", "avx512f", "avx512_vnni"}, "AVX512", "32-true"),  # AVX512 without BF16
        ({"avx2"}, "AVX2", "32-true"),
        (set(), "DEFAULT", "32-true"),  # no /proc/cpuinfo
    ],
)
def test_cpu_auto_takes_bf16_only_with_native_bf16(monkeypatch, flags, capability, expected):
    monkeypatch.setattr(P, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    used, why = P.choose_precision("auto", "cpu")
    assert used == expected
    assert ("bf16" in why) if expected == "bf16-mixed" else ("neither" in why)


def test_cuda_auto_is_bf16_or_fp16_by_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla V100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    used, why = P.choose_precision("auto", "gpu")
    assert used == "16-mixed" and "V100" in why and "scaling" in why
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert P.choose_precision("auto", "gpu")[0] == "bf16-mixed"
    assert P.choose_precision("auto", "auto")[0] == "bf16-mixed"  # auto accelerator finds the GPU


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert P.cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert P.cpu_flags(tmp_path / "absent") == set()


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_gradients_are_clipped_with_the_fused_optimizer(cache_dir, tmp_path, precision):
    """Lightning's mixed-precision plugin refuses to clip for a fused AdamW; the module clips
    itself where no scaler is involved (every bf16 run failed there on a CPU with AMX)."""
    import lightning as L

    from tests.helpers.config import tiny_cfg
    from tmc_lightning.training.factory import make_datamodule, make_module
    from tmc_lightning.training.run import make_trainer

    cfg = tiny_cfg(
        cache_dir, "model=unet", "trainer.max_epochs=1", "trainer.gradient_clip_val=1e-3"
    )
    dm = make_datamodule(cfg)
    module = make_module(cfg, dm)
    norms = []

    class Spy(L.Callback):
        def on_train_start(self, trainer, pl_module):
            opt = trainer.optimizers[0]
            assert opt.defaults["fused"], "the CPU optimizer should be the fused one"

            def after_step(optimizer, args, kwargs):  # the closure ran inside step()
                grads = [p.grad for g in optimizer.param_groups for p in g["params"]]
                norms.append(float(torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(g) for g in grads if g is not None]))))  # fmt: skip

            opt.register_step_post_hook(after_step)

    trainer = make_trainer(cfg, tmp_path, precision=precision)
    trainer.callbacks.append(Spy())
    trainer.fit(module, datamodule=dm)
    assert len(norms) == 6  # 48 images, batch 8
    assert max(norms) <= 1e-3 * 1.001, norms
