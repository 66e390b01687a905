"""radfuse.extract: the feature factory (docs/extract.md).

- `params`: PyRadiomics params files (load, validate, hash, required packages, expected outputs)
- `radiomics`: one ROI through PyRadiomics (`extract_roi`) and the cached per-ROI worker task
- `roi_crop`, `feature_classes`, `fast_glcm`, `torch_glcm`, `_compat`: value-preserving speed-ups (crop,
  per-extractor feature classes, GLCM kernel, the GLCM on a torch device) and the SciPy shim for LBP3D
- `roi_cache`, `runner`, `tables`, `radiomics_run`: content-keyed cache, joblib / Dask runner, streamed tables
- `icc`: ICC(3,1) and ICC(2,1) with confidence intervals
- `deep`: embeddings of every ROI from a named backbone layer
"""
