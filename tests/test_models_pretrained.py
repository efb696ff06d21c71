"""Offline EfficientNet-Lite0 weights → timm: the mapping and a real ImageNet prediction."""
import numpy as np
import pytest
import timm
import torch
from PIL import Image

from busdx.models import pretrained as P

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_mapping_covers_every_tensor_with_matching_shapes():
    mapped = P.lite0_state_dict_for_timm()
    ref = timm.create_model(P.TIMM_NAME, pretrained=False).state_dict()
    assert list(mapped) == list(ref)
    assert all(mapped[k].shape == ref[k].shape for k in ref)
    assert len(mapped) == P.N_TENSORS


def test_reordered_checkpoint_fails_loudly(monkeypatch):
    src = P._source_state_dict()
    keys = list(src)
    keys[6], keys[12] = keys[12], keys[6]  # a depthwise weight swapped with a projection
    monkeypatch.setattr(P, "_source_state_dict", lambda: {k: src[k] for k in keys})
    with pytest.raises(P.WeightMappingError, match="mismatch"):
        P.lite0_state_dict_for_timm()


def test_new_head_keeps_trunk_and_extra_channel_starts_at_zero():
    mapped = P.lite0_state_dict_for_timm()
    m = P.efficientnet_lite0(num_classes=3, in_chans=4)
    sd = m.state_dict()
    assert torch.equal(sd["blocks.3.0.conv_pw.weight"], mapped["blocks.3.0.conv_pw.weight"])
    assert torch.equal(sd["conv_stem.weight"][:, :3], mapped["conv_stem.weight"])
    assert not sd["conv_stem.weight"][:, 3].any()
    assert sd["classifier.weight"].shape == (3, 1280)


def test_imagenet_head_sees_a_cat():
    from skimage.data import chelsea

    model = P.efficientnet_lite0().eval()
    img = Image.fromarray(chelsea()).resize((224, 224), Image.BICUBIC)
    x = torch.tensor(np.asarray(img), dtype=torch.float32).permute(2, 0, 1) / 255.0
    x = (x - torch.tensor(P.LITE0_MEAN).view(3, 1, 1)) / torch.tensor(P.LITE0_STD).view(3, 1, 1)
    with torch.no_grad():
        top5 = model(x[None]).topk(5).indices[0].tolist()
    assert top5[0] in CATS and len(CATS & set(top5)) >= 2, top5
