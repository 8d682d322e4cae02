"""Every registered network: shapes, gradients, offline rebuild, and a fast_dev_run through train."""

import pytest
import torch

from tests.helpers.config import tiny_cfg
from tests.helpers.models import BASELINES, SIZE, make_batch, tiny_kwargs, tiny_module
from tmc_lightning.hub import EncoderUnavailableError
from tmc_lightning.losses import task_loss
from tmc_lightning.models import build_model, list_models


def test_baselines_are_registered():
    assert BASELINES <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_reaches_every_parameter(name):
    # Through the module's training loss, so auxiliary heads and alignment heads count too.
    module = tiny_module(name).train()
    loss, _, logits = module._step(make_batch())
    assert logits.shape == (2, 1, SIZE, SIZE)
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    loss.backward()
    params = [(n, p) for n, p in module.model.named_parameters() if p.requires_grad]
    assert params
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"no gradient for {missing[:10]}"
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient for {bad[:10]}"


@pytest.mark.parametrize("name", list_models())
def test_forward_gives_final_logits_only(name):
    model = build_model(name, **tiny_kwargs(name)).eval()
    batch = make_batch()
    with torch.no_grad():
        logits = model(batch["image"], batch["input_ids"], batch["attention_mask"])
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 1, SIZE, SIZE)


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str | int) and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


@pytest.mark.parametrize("name", list_models())
def test_checkpoint_kwargs_rebuild_the_same_network(name):
    model = build_model(name, **tiny_kwargs(name)).eval()
    get = getattr(model, "checkpoint_kwargs", None)
    kwargs = get() if get else tiny_kwargs(name)
    assert _plain(kwargs), f"checkpoint kwargs must be plain values: {kwargs}"
    rebuilt = build_model(name, **kwargs).eval()
    rebuilt.load_state_dict(model.state_dict())
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            rebuilt(batch["image"], batch["input_ids"], batch["attention_mask"]),
            model(batch["image"], batch["input_ids"], batch["attention_mask"]),
        )


def test_unetpp_aux_loss_only_in_training():
    module = tiny_module("unetpp")
    batch = make_batch()
    module.train()
    loss, parts, logits = module._step(batch)
    assert set(parts) == {"task", "aux"}
    torch.testing.assert_close(loss, parts["task"] + parts["aux"])
    aux = module.model.forward_features(batch["image"]).aux_logits
    assert len(aux) == 3 and all(a.shape == logits.shape for a in aux)

    module.eval()
    with torch.no_grad():
        loss, parts, logits = module._step(batch)
        out = module.model.forward_features(batch["image"])
    assert set(parts) == {"task"}
    torch.testing.assert_close(loss, task_loss(out.logits, batch["mask"], 0.5))
    torch.testing.assert_close(logits, out.logits)  # metrics see the final head


def test_unetpp_without_deep_supervision_has_no_aux_heads():
    module = tiny_module("unetpp", deep_supervision=False).train()
    loss, parts, _ = module._step(make_batch())
    assert set(parts) == {"task"}
    loss.backward()
    assert all(p.grad is not None for p in module.model.parameters())


def test_transunet_pretrained_offline_fails_fast_with_instructions():
    with pytest.raises(EncoderUnavailableError, match="model.pretrained=false"):
        build_model("transunet", preset="tiny", image_size=SIZE, pretrained=True)


@pytest.mark.parametrize("name", list_models())
def test_fast_dev_run_through_train(cache_dir, tmp_path, name):
    from tmc_lightning.training.run import run

    results = run(tiny_cfg(cache_dir, f"model={name}", "debug=fast_dev_run"), tmp_path)
    assert results["model"]["name"] == name
    assert results["model"]["params"] > 0 and results["model"]["gflops_per_image"] > 0
