from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision

from stylize.config import Backbone, BackboneConfig, Pooling
from stylize.errors import InputError, WeightsError
from stylize.features import (AVERAGE_POOL_SCALE, FeatureExtractor, build_features, bundled_weights_path,
                              check_layers, layer_names, load_weights, min_image_side, torchvision_cache_path,
                              weights_status)


def torchvision_features(arch: str) -> torch.nn.Sequential:
    """torchvision's own VGG `features`, built on the meta device (layout only, instant)."""
    with torch.device("meta"):
        return getattr(torchvision.models, arch)().features


def test_layer_names_follow_the_papers():
    names = layer_names("vgg16")
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert len(names) == len(torchvision_features("vgg16"))
    assert names.index("relu4_2") == 20 and names.index("relu5_1") == 25
    assert layer_names("vgg19").index("relu5_1") == 29
    assert len(layer_names("vgg19")) == len(torchvision_features("vgg19"))


def test_extractor_returns_requested_layers_and_stops_at_deepest():
    state = build_features("vgg16").state_dict()
    ext = FeatureExtractor("vgg16", state, ["relu1_1", "relu3_1"])
    assert len(ext.body) == layer_names("vgg16").index("relu3_1") + 1
    out = ext(torch.rand(2, 3, 32, 32))
    assert set(out) == {"relu1_1", "relu3_1"}
    assert out["relu1_1"].shape == (2, 64, 32, 32) and out["relu3_1"].shape == (2, 256, 8, 8)


def test_extractor_computes_no_deeper_than_the_layers_asked_for():
    torch.manual_seed(0)
    ext = FeatureExtractor("vgg16", build_features("vgg16").state_dict(), ["relu1_1", "relu3_1"])
    ran = []
    ext.body[layer_names("vgg16").index("conv2_1")].register_forward_hook(lambda *_: ran.append(True))
    x = torch.rand(1, 3, 32, 32)
    shallow = ext(x, {"relu1_1"})
    assert set(shallow) == {"relu1_1"} and not ran  # content targets skip the deeper style layers
    full = ext(x)
    assert ran and torch.equal(shallow["relu1_1"], full["relu1_1"])


def _imagenet(x: torch.Tensor) -> torch.Tensor:
    """``x`` normalised with ImageNet's statistics, written out here as torchvision's VGG expects
    them (not read from stylize.features, so that a wrong constant there would fail)."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def test_channels_last_features_and_gram_match_the_plain_layout():
    """The extractor runs channels-last; its features and Gram matrices (and their gradients)
    are those of the ordinary layout."""
    from stylize.losses import gram_matrix

    torch.manual_seed(0)
    state = build_features("vgg16").state_dict()
    ext = FeatureExtractor("vgg16", state, ["relu2_1"])
    plain = build_features("vgg16", layer_names("vgg16").index("relu2_1") + 1)
    plain.load_state_dict({k: v for k, v in state.items() if k in plain.state_dict()})
    x = torch.rand(1, 3, 24, 20, requires_grad=True)
    feats = ext(x)["relu2_1"]
    assert feats.is_contiguous(memory_format=torch.channels_last)
    expected = plain(_imagenet(x))
    assert torch.allclose(feats, expected, atol=1e-5)
    ours = torch.autograd.grad(gram_matrix(feats).square().sum(), x)[0]
    flat = expected.flatten(2)
    reference = torch.autograd.grad((flat @ flat.transpose(1, 2) / flat.shape[-1]).square().sum(), x)[0]
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-6)


def test_average_pooling_keeps_the_weights_and_scales_the_average():
    """--pooling average: the same parameters (state-dict keys), each 2x2 max replaced by the
    average times AVERAGE_POOL_SCALE."""
    torch.manual_seed(0)
    state = build_features("vgg16").state_dict()
    assert build_features("vgg16", pooling=Pooling.average).state_dict().keys() == state.keys()
    average = FeatureExtractor("vgg16", state, ["relu2_1"], Pooling.average)
    maximum = FeatureExtractor("vgg16", state, ["relu2_1"])
    x = torch.rand(1, 3, 16, 12)
    body = build_features("vgg16", layer_names("vgg16").index("relu2_1") + 1)
    body.load_state_dict({k: v for k, v in state.items() if k in body.state_dict()})
    block1 = body[:4](_imagenet(x))
    expected = body[5:](torch.nn.functional.avg_pool2d(block1, 2) * AVERAGE_POOL_SCALE)
    assert torch.allclose(average(x)["relu2_1"], expected, atol=1e-5)
    assert not torch.allclose(maximum(x)["relu2_1"], expected, atol=1e-3)


def test_extractor_is_frozen_and_normalises_input():
    state = build_features("vgg16").state_dict()
    ext = FeatureExtractor("vgg16", state, ["conv1_1"])
    ext.train()
    assert not ext.training and not any(p.requires_grad for p in ext.parameters())
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(ext(x)["conv1_1"], ext.body[0](_imagenet(x)), atol=1e-6)


def test_unknown_layer_suggests_a_name():
    with pytest.raises(InputError, match="did you mean relu4_2"):
        check_layers("vgg16", ["relu4_2x"])


def test_min_image_side_depends_on_deepest_layer():
    assert min_image_side("vgg16", ["relu1_1"]) == 1
    assert min_image_side("vgg16", ["relu1_1", "relu5_1"]) == 16


def test_bundled_weights_load_into_torchvision_layout():
    path = bundled_weights_path()
    assert path.is_file() and 15e6 < path.stat().st_size < 25e6
    state = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values())
    layout = torchvision_features("vgg16").state_dict()
    assert set(state) <= set(layout)
    assert all(state[k].shape == layout[k].shape for k in state)
    assert sorted(set(layout) - set(state)) == ["26.bias", "26.weight", "28.bias", "28.weight"]  # conv5_2, 5_3


def test_bundled_weights_are_not_random():
    # Real conv1_1 filters are smooth colour/edge detectors: neighbouring taps are correlated,
    # unlike random initialisation.
    w = torch.load(bundled_weights_path(), weights_only=True)["0.weight"].float()
    a, b = w[..., :, :-1].flatten(), w[..., :, 1:].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.3
    r = build_features("vgg16")[0].weight
    ra, rb = r[..., :, :-1].flatten(), r[..., :, 1:].flatten()
    assert abs(torch.corrcoef(torch.stack([ra, rb]))[0, 1]) < 0.2


def test_deeper_layer_than_bundled_weights_is_explained():
    weights = load_weights(BackboneConfig())
    with pytest.raises(WeightsError, match="relu5_2.*relu5_1"):
        FeatureExtractor(weights.arch, weights.state, ["relu5_2"])


def _save_full_model_state(path: Path, arch: str) -> None:
    state = {f"features.{k}": v for k, v in build_features(arch).state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision model also has a classifier
    torch.save(state, path)


def test_user_weights_architecture_is_detected(tmp_path):
    path = tmp_path / "vgg19.pth"
    _save_full_model_state(path, "vgg19")
    loaded = load_weights(BackboneConfig(weights=path))
    assert loaded.arch == "vgg19" and "28.weight" in loaded.state and "classifier.0.weight" not in loaded.state
    with pytest.raises(WeightsError, match="VGG-19.*--backbone vgg16"):
        load_weights(BackboneConfig(name=Backbone.vgg16, weights=path))


def test_features_only_state_dict_is_accepted(tmp_path):
    path = tmp_path / "features.pth"
    torch.save(build_features("vgg16").state_dict(), path)
    assert load_weights(BackboneConfig(weights=path)).arch == "vgg16"


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_foreign_weights_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="weights.pth"):
        load_weights(BackboneConfig(weights=path))


def test_offline_download_names_cache_and_weights_option(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as info:
        load_weights(BackboneConfig(name=Backbone.vgg19))
    message = str(info.value)
    assert str(tmp_path) in message and "--weights" in message and "\n" not in message
    assert weights_status(Backbone.vgg19).startswith("not downloaded")
    assert weights_status(Backbone.vgg16).startswith("bundled")


def test_cached_torchvision_weights_load_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("must not download a cached file")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    cache = torchvision_cache_path(Backbone.vgg19)
    cache.parent.mkdir(parents=True)
    _save_full_model_state(cache, "vgg19")
    loaded = load_weights(BackboneConfig(name=Backbone.vgg19))
    assert loaded.arch == "vgg19" and "28.weight" in loaded.state
    assert weights_status(Backbone.vgg19).startswith("cached")


def test_torchvision_weight_addresses_are_torchvisions():
    """TORCHVISION_URLS spares `stylize info` torchvision's import; they must be its addresses."""
    from stylize.features import TORCHVISION_URLS

    assert TORCHVISION_URLS == {Backbone.vgg16_imagenet: torchvision.models.VGG16_Weights.IMAGENET1K_V1.url,
                                Backbone.vgg19: torchvision.models.VGG19_Weights.IMAGENET1K_V1.url}
