"""PyRadiomics params files: loading, validation, hashing, and what each one must produce.

A params file is PyRadiomics' own YAML/JSON (`imageType`, `featureClass`, `setting`); any user's file works
unchanged. radfuse adds two checks PyRadiomics does not make: the packages an image type needs are importable
(PyRadiomics only logs a warning and skips the filter), and every configured image type and feature class
really yields features.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import yaml

from radfuse.artifacts import RAD_PREFIX
from radfuse.extract._compat import scipy_shims_for

DIAGNOSTICS_PREFIX = "diagnostics_"

# Image types whose filter PyRadiomics skips silently when a module is missing: (module, attribute) pairs it imports.
REQUIRED_MODULES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "LBP3D": (("scipy.stats", "kurtosis"), ("scipy.ndimage", "map_coordinates"), ("scipy.special", "sph_harm"),
              ("trimesh.creation", "icosphere")),
    "LBP2D": (("skimage.feature", "local_binary_pattern"),),
    "Wavelet": (("pywt", None),),
}


class RadiomicsConfigError(ValueError):
    """A params file that cannot produce what it asks for (unknown key, missing package, empty output)."""


def load_params(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read a params file (YAML or JSON) or take a dict; validate it with PyRadiomics' own schema."""
    if isinstance(source, Mapping):
        params = json.loads(json.dumps(dict(source)))  # plain, detached copy (OmegaConf containers included)
        origin = "the params dict"
    else:
        path = Path(source)
        if not path.is_file():
            raise RadiomicsConfigError(f"radiomics params file {path} does not exist: pass the path of a "
                                       "PyRadiomics params YAML, e.g. conf/radiomics/fast.yaml")
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        origin = str(path)
    params = {k: v for k, v in params.items() if v is not None}
    for section in ("imageType", "featureClass", "setting"):
        params.setdefault(section, {})
        params[section] = {k: ({} if v is None and section == "imageType" else v)
                           for k, v in (params[section] or {}).items()}
    params["setting"] = {k: v for k, v in params["setting"].items() if v is not None}
    _validate(params, origin)
    return params


def quiet_pyradiomics() -> None:
    """PyRadiomics and its schema validator log every step at INFO (and notes at WARNING); radfuse reports per
    ROI instead, and errors still show."""
    import radiomics

    radiomics.setVerbosity(logging.ERROR)  # its own stderr handler
    logging.getLogger("radiomics").setLevel(logging.ERROR)  # what reaches the application's handlers
    logging.getLogger("pykwalify").setLevel(logging.WARNING)


def _validate(params: dict[str, Any], origin: str) -> None:
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    quiet_pyradiomics()
    try:
        RadiomicsFeatureExtractor(params)
    except Exception as error:  # pykwalify raises its own SchemaError with the offending path
        raise RadiomicsConfigError(f"{origin} is not a valid PyRadiomics params file: {error}. See "
                                   "https://pyradiomics.readthedocs.io/en/latest/customization.html") from error


def params_digest(params: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> str:
    """Hash of the params (key order irrelevant) plus any radfuse option that changes the values."""
    blob = json.dumps({"params": params, "extra": dict(extra or {})}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def image_types(params: Mapping[str, Any]) -> list[str]:
    return list(params.get("imageType") or {"Original": {}})


def feature_classes(params: Mapping[str, Any]) -> list[str]:
    from radiomics import getFeatureClasses

    configured = list(params.get("featureClass") or {})
    return configured or [c for c in getFeatureClasses() if c != "shape2D"]


def check_requirements(params: Mapping[str, Any]) -> None:
    """Fail now, naming the package, if a configured image type would be skipped for want of a module."""
    for image_type in image_types(params):
        for module_name, attribute in REQUIRED_MODULES.get(image_type, ()):
            try:
                module = importlib.import_module(module_name)
                if attribute is not None:
                    with scipy_shims_for([image_type]):  # what the extraction will have (sph_harm for LBP3D)
                        getattr(module, attribute)
            except (ImportError, AttributeError) as error:
                package = module_name.split(".")[0].replace("skimage", "scikit-image").replace("pywt", "PyWavelets")
                raise RadiomicsConfigError(
                    f"image type {image_type} needs {module_name}.{attribute or ''} ({error}); PyRadiomics would "
                    f"silently skip it. Install it: pip install {package}") from error


def image_type_of(token: str) -> str:
    """Map PyRadiomics' output image name (`log-sigma-1-0-mm-3D`, `wavelet-LLH`, `lbp-3D-k`) to its image type."""
    for prefix, image_type in (("log-sigma", "LoG"), ("wavelet", "Wavelet"), ("lbp-3D", "LBP3D"),
                               ("lbp-2D", "LBP2D")):
        if token.startswith(prefix):
            return image_type
    names = {"original": "Original", "square": "Square", "squareroot": "SquareRoot", "logarithm": "Logarithm",
             "exponential": "Exponential", "gradient": "Gradient"}
    return names.get(token, token)


def missing_outputs(params: Mapping[str, Any], feature_names: list[str]) -> list[str]:
    """Configured image types and feature classes for which `feature_names` (PyRadiomics keys) hold nothing."""
    seen_types, seen_classes = set(), set()
    for name in feature_names:
        token, feature_class = name.split("_", 2)[:2]
        seen_types.add(image_type_of(token))
        seen_classes.add(feature_class)
    missing = [f"image type {t}" for t in image_types(params) if t not in seen_types]
    missing += [f"feature class {c}" for c in feature_classes(params) if c not in seen_classes]
    return missing


def split_result(result: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """PyRadiomics' OrderedDict -> ({feature key: float}, {diagnostic key: str}); keys as PyRadiomics names them."""
    features, diagnostics = {}, {}
    for key, value in result.items():
        if key.startswith(DIAGNOSTICS_PREFIX):
            diagnostics[key] = value if isinstance(value, str) else repr(_plain(value))
        else:
            features[key] = float(value)
    return features, diagnostics


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def feature_column(key: str) -> str:
    """`original_glcm_Contrast` -> `rad__original_glcm_Contrast` (`rad__<image type>_<class>_<name>`)."""
    return f"{RAD_PREFIX}{key}"
