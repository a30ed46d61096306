"""The encoder families: shapes, measured receptive field, missing data, tiling invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openeo_deepfeatures.errors import ProcessParameterInvalid
from openeo_deepfeatures.training.models import DEFAULTS, DenseEncoder, PatchEncoder, build_model


def inputs(n, t, c, h, w, *, seed=0, dtype=torch.float64, missing=0.3):
    g = torch.Generator().manual_seed(seed)
    valid = (torch.rand(n, t, 1, h, w, generator=g) >= missing).to(dtype)
    x = torch.randn(n, t, c, h, w, generator=g, dtype=dtype) * valid
    gaps = torch.randint(1, 25, (n, t), generator=g).to(dtype)
    gaps[:, 0] = 0
    day = torch.cumsum(gaps, dim=1)
    doy = (day + 100) % 365
    return x, valid, day, doy


def dense(**hyper) -> DenseEncoder:
    torch.manual_seed(0)
    return build_model("dense", 3, {"width": 8, "decoder_width": 8, **hyper}).double().eval()


def changed_extent(model, args, perturbed) -> list[tuple[int, int]]:
    """(first, last) index along (t, y, x) of the outputs that changed, and nothing else."""
    with torch.no_grad():
        diff = (model(*perturbed) - model(*args)).abs().amax(dim=(0, 2))  # (t, y, x)
    where = (diff > 0).nonzero()
    return [(int(where[:, i].min()), int(where[:, i].max())) for i in range(3)]


def test_dense_shapes_for_any_size():
    model = dense(latent=5)
    for n, t, h, w in [(1, 1, 1, 1), (2, 7, 9, 13), (1, 20, 4, 30)]:
        x, valid, day, doy = inputs(n, t, 3, h, w)
        with torch.no_grad():
            z = model(x, valid, day, doy)
            assert z.shape == (n, t, 5, h, w)
            assert model.decode(z).shape == (n, t, 3, h, w)
            assert torch.isfinite(z).all()


def test_dense_receptive_field_measured():
    """Perturb one pixel-date; the outputs that change span exactly the declared field."""
    model = dense()  # the default depth and dilations
    rf = model.receptive_field()
    assert 2 * rf["spatial"] + 1 >= 15 and 2 * rf["temporal_values"] + 1 >= 11
    t0, y0, x0 = 14, 14, 14
    args = inputs(1, 29, 3, 29, 29)
    args[1][0, t0, 0, y0, x0] = 1.0  # the pixel-date is valid
    x, valid, day, doy = args
    x2 = x.clone()
    x2[0, t0, :, y0, x0] += 2.0
    spatial, temporal = rf["spatial"], rf["temporal_values"]
    box = [
        (t0 - temporal, t0 + temporal),
        (y0 - spatial, y0 + spatial),
        (x0 - spatial, x0 + spatial),
    ]
    assert changed_extent(model, args, (x2, valid, day, doy)) == box
    valid2 = valid.clone()
    valid2[0, t0, 0, y0, x0] = 0.0  # the pixel-date goes missing
    assert changed_extent(model, args, (x, valid2, day, doy)) == box
    # a date's time enters through the gaps to its neighbours: one more date each way
    day2 = day.clone()
    day2[0, t0] += 2.0
    extent = changed_extent(model, args, (x, valid, day2, doy))
    assert extent[0] == (t0 - rf["temporal"], t0 + rf["temporal"])
    assert extent[1:] == [(0, 28), (0, 28)]  # dates are shared by the whole tile


def test_dense_receptive_field_follows_the_config():
    model = dense(spatial_dilations=[1, 1], temporal_dilations=[2, 1], fill_window=3)
    assert model.receptive_field() == {"spatial": 2, "temporal_values": 4, "temporal": 5}
    args = inputs(1, 21, 3, 15, 15)
    args[1][0, 10, 0, 7, 7] = 1.0
    x2 = args[0].clone()
    x2[0, 10, 1, 7, 7] -= 1.5
    assert changed_extent(model, args, (x2, *args[1:])) == [(6, 14), (5, 9), (5, 9)]


def test_missing_observations_are_ignored():
    """Values under the mask do not matter; a missing pixel-date still gets features."""
    model = dense()
    x, valid, day, doy = inputs(1, 12, 3, 10, 10, missing=0.5)
    noise = torch.randn(x.shape, dtype=x.dtype) * (1 - valid)
    with torch.no_grad():
        z = model(x, valid, day, doy)
        np.testing.assert_array_equal(z.numpy(), model(x + noise, valid, day, doy).numpy())
    assert torch.isfinite(z).all()
    everything_missing = torch.zeros_like(valid)
    with torch.no_grad():
        assert torch.isfinite(model(x * 0, everything_missing, day, doy)).all()


def test_dense_features_do_not_depend_on_the_tiling():
    """A tile cut with a halo of the receptive field gives the same core as the whole cube."""
    model = dense()
    rf = model.receptive_field()
    x, valid, day, doy = inputs(1, 40, 3, 40, 40)
    with torch.no_grad():
        whole = model(x, valid, day, doy)
        t, y = slice(12, 28), slice(10, 30)
        s, r = rf["spatial"], rf["temporal"]
        ht, hy = slice(t.start - r, t.stop + r), slice(y.start - s, y.stop + s)
        tile = model(x[:, ht, :, hy, hy], valid[:, ht, :, hy, hy], day[:, ht] + 1000, doy[:, ht])
    core = tile[:, r:-r, :, s:-s, s:-s]
    np.testing.assert_allclose(core.numpy(), whole[:, t, :, y, y].numpy(), rtol=0, atol=1e-12)


def test_patch_shapes_and_masked_frames():
    torch.manual_seed(0)
    model = build_model("patch", 4, {"width": 8, "heads": 2}).double().eval()
    assert isinstance(model, PatchEncoder)
    assert model.receptive_field() == {"spatial": 7, "temporal_values": 5, "temporal": 5}
    x, valid, day, doy = inputs(5, 11, 4, 15, 15)
    with torch.no_grad():
        z = model(x, valid, day, doy)
        assert z.shape == (5, 6)
        assert (z > 0).all()  # softplus latent, as DeepFeatures
        assert model.decode(z).shape == (5, 4, 15, 15)
        valid[:, 2] = 0.0  # a fully clouded frame: its values do not matter
        z2 = model(x, valid, day, doy)
        x[:, 2] += 5.0
        np.testing.assert_array_equal(model(x, valid, day, doy).numpy(), z2.numpy())
        # day offsets beyond a year are clamped to the last embedding
        late = day.clone()
        late[:, -1] = 5000.0
        assert torch.isfinite(model(x, valid, late, doy)).all()


def test_targets():
    dense_model = dense()
    x = torch.randn(2, 5, 3, 4, 4)
    mask = torch.rand(2, 5, 3, 4, 4) > 0.5
    target, m, weight = dense_model.targets(x, mask)
    assert target is x and m is mask and weight is None
    patch = build_model("patch", 3, {"width": 8, "heads": 2, "patch_size": [5, 7, 7]})
    x = torch.randn(2, 5, 3, 7, 7)
    target, m, weight = patch.targets(x, x > 0)
    torch.testing.assert_close(target, x[:, 2])
    assert weight.shape == (7, 7) and weight[3, 3] == weight.max() == 1.0


def test_build_model_checks():
    with pytest.raises(ProcessParameterInvalid, match="'lstm' is not one of"):
        build_model("lstm", 3, {})
    assert set(DEFAULTS) == {"dense", "patch"}
    with pytest.raises(ValueError, match="same length"):
        build_model("dense", 3, {"spatial_dilations": [1], "temporal_dilations": [1, 1]})
