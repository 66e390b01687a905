"""radfuse.evaluate: metrics with bootstrap and DeLong CIs, decision curves, calibration, SHAP, Table 1,
nomogram, and the self-contained HTML report (`radfuse.evaluate.report.build_report`,
`python -m radfuse.evaluate PRED.parquet`)."""
