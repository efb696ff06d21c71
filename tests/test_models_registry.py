"""smp/timm network registry: names, offline weights in the smp encoder, checkpoints."""
import pytest
import torch

from busdx.models import registry as R
from busdx.models.pretrained import lite0_state_dict_for_timm


@pytest.mark.parametrize("arch", sorted(R.ARCHITECTURES))
def test_every_architecture_builds_and_runs(arch):
    for task in ("seg", "multitask"):
        m = R.build(R.NetSpec(task=task, arch=arch, weights="none")).eval()
        with torch.no_grad():
            out = m(torch.zeros(2, 3, 64, 64))
        if task == "seg":
            assert out.shape == (2, 1, 64, 64)
        else:
            assert out[0].shape == (2, 1, 64, 64) and out[1].shape == (2, 3)


def test_offline_weights_are_in_the_smp_encoder():
    m = R.build(R.NetSpec(task="seg"))
    ref = lite0_state_dict_for_timm()
    enc = m.encoder.model.state_dict()
    assert len(enc) > 200
    assert all(torch.equal(v, ref[k]) for k, v in enc.items())


def test_classifier_with_mask_channel():
    m = R.build(R.NetSpec(task="cls", encoder=R.DEFAULT_CLASSIFIER, in_chans=4)).eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 4, 64, 64)).shape == (2, 3)


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(R.UnknownNameError) as e:
        R.build(R.NetSpec(task="seg", arch="segformerx"))
    for a in R.ARCHITECTURES:
        assert a in str(e.value)


def test_unknown_encoder_lists_the_valid_ones():
    with pytest.raises(R.UnknownNameError) as e:
        R.check_spec(R.NetSpec(task="seg", encoder="tu-efficientnet_lite9"))
    msg = str(e.value)
    assert "tu-tf_efficientnet_lite0" in msg and "resnet34" in msg and "tu-<timm model>" in msg
    with pytest.raises(R.UnknownNameError, match="timm"):
        R.check_spec(R.NetSpec(task="cls", encoder="not_a_model"))


def test_offline_weights_only_for_lite0():
    with pytest.raises(R.UnknownNameError, match="no offline weights"):
        R.check_spec(R.NetSpec(task="seg", encoder="resnet18", weights="offline"))
    R.check_spec(R.NetSpec(task="seg", encoder="resnet18", weights="none"))


def test_hub_failure_is_explained(monkeypatch):
    def offline(*a, **k):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setitem(R.ARCHITECTURES, "unet", offline)  # never touch the network in tests
    with pytest.raises(R.HubWeightsError, match="offline"):
        R.build(R.NetSpec(task="seg", encoder="resnet18", weights="imagenet"))


def test_checkpoint_round_trip(tmp_path):
    spec = R.NetSpec(task="multitask", decoder_channels=(32, 16, 16, 8, 8), weights="none")
    m = R.build(spec).eval()
    R.save_checkpoint(tmp_path / "m.pt", spec, [m.state_dict()], {"size": 64})
    models, spec2, meta = R.load_checkpoint(tmp_path / "m.pt")
    assert spec2 == spec and meta == {"size": 64}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(models[0](x)[1], m(x)[1])


def test_freeze_stages():
    m = R.build(R.NetSpec(task="seg", weights="none"))
    mods = R.freeze_stages(m, "seg", 2)
    assert mods and all(not p.requires_grad for mod in mods for p in mod.parameters())
    assert any(p.requires_grad for p in m.encoder.model.blocks[2].parameters())
    with pytest.raises(ValueError, match="stages"):
        R.freeze_stages(R.build(R.NetSpec(task="seg", weights="none")), "seg", 9)
