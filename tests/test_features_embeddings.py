"""EfficientNet-Lite0 embeddings: shapes, preprocessing, frozen == eager (random weights)."""
import numpy as np
import pytest
import torch

from busdx.features.embeddings import column_names, embed, freeze, load_encoder, pick_device, prepare


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return load_encoder(pretrained=False)


def test_prepare_squashes_to_square_uint8():
    img = np.random.default_rng(0).integers(0, 256, (300, 450)).astype(np.uint8)
    x = prepare(img, 224)
    assert x.shape == (224, 224) and x.dtype == np.uint8


def test_embed_shape_and_batches(encoder):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 64, 64)).astype(np.uint8)
    a = embed(imgs, encoder, batch_size=2)
    assert a.shape == (5, 1280) and a.dtype == np.float32 and np.isfinite(a).all()
    b = embed(imgs, encoder, batch_size=5)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert column_names(3) == ["cnn_0000", "cnn_0001", "cnn_0002"]
    with pytest.raises(ValueError, match="uint8"):
        embed(imgs.astype(np.float32), encoder)


def test_frozen_matches_eager(encoder):
    imgs = np.random.default_rng(1).integers(0, 256, (3, 64, 64)).astype(np.uint8)
    frozen = freeze(encoder, 64, 2)
    np.testing.assert_allclose(embed(imgs, frozen, 2), embed(imgs, encoder, 2), rtol=1e-3, atol=1e-4)


def test_grey_is_repeated_to_three_channels(encoder):
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x.clone()
            return x.mean(dim=(2, 3))

    img = np.full((1, 8, 8), 255, np.uint8)
    out = embed(img, Spy(), 1)
    assert seen["x"].shape == (1, 3, 8, 8)
    assert torch.allclose(seen["x"], torch.ones(1, 3, 8, 8))  # (1 - 0.5) / 0.5
    assert out.shape == (1, 3)


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
