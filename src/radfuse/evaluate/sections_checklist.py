"""CLEAR (Kocak et al. 2023, 58 items) and TRIPOD+AI (Collins et al. 2024, 27 items) filled from the run: for each
item the report section or artefact that answers it, or "to be completed by the authors" where only they know.

Item topics are short paraphrases for orientation; the published checklists hold the full wording.
"""

from __future__ import annotations

import html

from radfuse.artifacts import (CONFIG_FILE, CV_RESULTS_FILE, DELONG_TABLE, FAILURES_TABLE, GREY_LEVELS_TABLE,
                               ICC_TABLE, METRICS_FILE, MODEL_FILE, RADIOMICS_PARAMS_FILE, SPLITS_FILE)
from radfuse.evaluate.context import ReportContext
from radfuse.evaluate.html import Section

AUTHORS = "to be completed by the authors"
CLEAR_SOURCE = "Kocak B et al. Insights Imaging 2023;14:75 (https://clearchecklist.github.io/clear_checklist/)"
TRIPOD_SOURCE = "Collins GS et al. BMJ 2024;385:e078378 (TRIPOD+AI; sub-items grouped under their main item)"

# (item, manuscript part, topic, report sections that answer it, artefacts that answer it)
CLEAR_ITEMS: tuple[tuple[int, str, str, tuple[str, ...], str], ...] = (
    (1, "Title", "Title names the radiomic methodology", (), ""),
    (2, "Abstract", "Structured summary", (), ""),
    (3, "Keywords", "Keywords for radiomics", (), ""),
    (4, "Introduction", "Scientific or clinical background", (), ""),
    (5, "Introduction", "Rationale for a radiomic approach", (), ""),
    (6, "Introduction", "Study objectives", (), ""),
    (7, "Methods: study design", "Adherence to guidelines or checklists", ("checklist",), ""),
    (8, "Methods: study design", "Ethical details", (), ""),
    (9, "Methods: study design", "Sample size calculation", (), ""),
    (10, "Methods: study design", "Study nature (retrospective / prospective)", (), ""),
    (11, "Methods: study design", "Eligibility criteria", (), ""),
    (12, "Methods: study design", "Flowchart of the technical pipeline", ("methods",), ""),
    (13, "Methods: data", "Data source", (), ""),
    (14, "Methods: data", "Data overlap with previous studies", (), ""),
    (15, "Methods: data", "Data split methodology", ("methods", "cohorts"), SPLITS_FILE),
    (16, "Methods: data", "Imaging protocol (acquisition and processing)", ("methods",), ""),
    (17, "Methods: data", "Definition of non-radiomic predictors", ("cohorts",), ""),
    (18, "Methods: data", "Definition of the reference standard", (), ""),
    (19, "Methods: segmentation", "Segmentation strategy", (), ""),
    (20, "Methods: segmentation", "Operators performing segmentation", (), ""),
    (21, "Methods: pre-processing", "Image pre-processing details", ("methods",), ""),
    (22, "Methods: pre-processing", "Resampling method and parameters", ("methods",), RADIOMICS_PARAMS_FILE),
    (23, "Methods: pre-processing", "Discretisation method and parameters", ("methods",), GREY_LEVELS_TABLE),
    (24, "Methods: pre-processing", "Image types (original, filtered)", ("methods",), RADIOMICS_PARAMS_FILE),
    (25, "Methods: feature extraction", "Extraction software and version", ("methods", "provenance"), ""),
    (26, "Methods: feature extraction", "Feature classes", ("methods",), ""),
    (27, "Methods: feature extraction", "Number of features", ("methods", "features"), ""),
    (28, "Methods: feature extraction", "Default configuration statement", ("methods",), RADIOMICS_PARAMS_FILE),
    (29, "Methods: data preparation", "Handling of missing data", ("methods",), FAILURES_TABLE),
    (30, "Methods: data preparation", "Class imbalance", ("methods", "cohorts"), ""),
    (31, "Methods: data preparation", "Segmentation reliability analysis", ("methods",), ICC_TABLE),
    (32, "Methods: data preparation", "Feature scaling", ("methods",), ""),
    (33, "Methods: data preparation", "Dimension reduction", ("methods", "features"), ""),
    (34, "Methods: modelling", "Algorithm details", ("methods", "classifiers"), ""),
    (35, "Methods: modelling", "Training and tuning", ("methods", "classifiers"), CV_RESULTS_FILE),
    (36, "Methods: modelling", "Handling of confounders", ("methods",), ""),
    (37, "Methods: modelling", "Model selection strategy", ("classifiers",), ""),
    (38, "Methods: evaluation", "Testing technique (internal, external)", ("methods", "performance"), ""),
    (39, "Methods: evaluation", "Performance metrics and rationale", ("performance",), ""),
    (40, "Methods: evaluation", "Uncertainty evaluation", ("performance", "roc"), METRICS_FILE),
    (41, "Methods: evaluation", "Statistical performance comparison", ("delong",), DELONG_TABLE),
    (42, "Methods: evaluation", "Comparison with non-radiomic and combined methods", ("delong", "nomogram"), ""),
    (43, "Methods: evaluation", "Interpretability and explainability methods", ("shap", "gradcam"), ""),
    (44, "Results", "Baseline demographic and clinical characteristics", ("cohorts",), ""),
    (45, "Results", "Participant flowchart", ("methods",), ""),
    (46, "Results", "Feature statistics (reproducibility, selection)", ("methods", "features"), ""),
    (47, "Results", "Model performance", ("performance", "roc", "calibration", "dca"), ""),
    (48, "Results", "Comparison with non-radiomic and combined approaches", ("delong", "nomogram"), ""),
    (49, "Discussion", "Overview of important findings", (), ""),
    (50, "Discussion", "Previous work and differences", (), ""),
    (51, "Discussion", "Practical implications", (), ""),
    (52, "Discussion", "Strengths and limitations", (), ""),
    (53, "Open science", "Sharing images with segmentations (not essential)", (), ""),
    (54, "Open science", "Sharing radiomic feature data", (), ""),
    (55, "Open science", "Sharing pre-processing scripts or settings", ("provenance",), CONFIG_FILE),
    (56, "Open science", "Sharing modelling source code", ("provenance",), ""),
    (57, "Open science", "Sharing final model files", (), ""),
    (58, "Open science", "Sharing a ready-to-use system (not essential)", (), ""),
)

TRIPOD_AI_ITEMS: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    ("1", "Title", "Development / evaluation of a prediction model, population, outcome", (), ""),
    ("2", "Abstract", "Structured summary (TRIPOD+AI for Abstracts)", (), ""),
    ("3", "Introduction", "Healthcare context, target population, health inequalities", (), ""),
    ("4", "Introduction", "Objectives (development and / or evaluation)", (), ""),
    ("5", "Methods", "Data sources and dates", ("methods",), ""),
    ("6", "Methods", "Setting, eligibility, treatments", ("methods",), ""),
    ("7", "Methods", "Data preparation and quality checks", ("methods",), ""),
    ("8", "Methods", "Outcome definition and assessment", (), ""),
    ("9", "Methods", "Predictors: definition and measurement", ("methods", "cohorts"), ""),
    ("10", "Methods", "Sample size", ("cohorts",), ""),
    ("11", "Methods", "Missing data", ("methods",), ""),
    ("12", "Methods", "Analytical methods: model type, tuning, internal validation, performance measures",
     ("methods", "classifiers", "performance"), ""),
    ("13", "Methods", "Class imbalance", ("methods",), ""),
    ("14", "Methods", "Fairness", (), ""),
    ("15", "Methods", "Model output and cut-offs", ("performance",), ""),
    ("16", "Methods", "Differences between development and evaluation data", ("cohorts",), ""),
    ("17", "Methods", "Ethical approval", (), ""),
    ("18", "Open science", "Funding, conflicts, protocol, registration, data and code sharing", ("provenance",), ""),
    ("19", "Patient and public involvement", "Patient and public involvement", (), ""),
    ("20", "Results", "Participants: flow, characteristics", ("methods", "cohorts"), ""),
    ("21", "Results", "Model development: participants and outcome events per analysis", ("cohorts",), ""),
    ("22", "Results", "Model specification", ("features", "nomogram"), MODEL_FILE),
    ("23", "Results", "Model performance with CIs, subgroups", ("performance", "roc", "calibration", "dca"), ""),
    ("24", "Results", "Model updating", ("calibration",), ""),
    ("25", "Discussion", "Interpretation", (), ""),
    ("26", "Discussion", "Limitations", (), ""),
    ("27", "Discussion", "Usability in current care", (), ""),
)


def _answer(anchors: tuple[str, ...], artefact: str, present: dict[str, str]) -> str:
    links = [f'<a href="#{a}">{html.escape(present[a])}</a>' for a in anchors if a in present]
    if artefact and links:
        links.append(html.escape(artefact))
    return "; ".join(links) if links else AUTHORS


def _table(rows: list[tuple], present: dict[str, str]) -> str:
    head = "<tr><th>item</th><th>part</th><th>topic</th><th>answered in this report by</th></tr>"
    body = "".join(f"<tr><td>{html.escape(str(item))}</td><td>{html.escape(part)}</td><td>{html.escape(topic)}</td>"
                   f"<td>{_answer(anchors, artefact, present)}</td></tr>"
                   for item, part, topic, anchors, artefact in rows)
    return f"<table>{head}{body}</table>"


def checklist_section(ctx: ReportContext, sections: list[Section]) -> Section:
    """Both checklists; an item points to a section only when that section rendered with content."""
    section = Section("checklist", "Reporting checklists (CLEAR, TRIPOD+AI)")
    present = {s.anchor: s.title for s in sections if not _empty(s)}
    present["checklist"] = section.title
    section.text("Each item names the section of this report (or the run's artefact) that answers it; "
                 f"'{AUTHORS}' where only the authors can know (ethics, eligibility, reference standard, discussion). "
                 "Topics are short paraphrases; use the published checklists for the full wording.")
    section.blocks.append(f"<h4>CLEAR, 58 items ({html.escape(CLEAR_SOURCE)})</h4>" + _table(CLEAR_ITEMS, present))
    section.blocks.append(f"<h4>TRIPOD+AI, 27 items ({html.escape(TRIPOD_SOURCE)})</h4>"
                          + _table(TRIPOD_AI_ITEMS, present))
    ctx.out["checklists"] = {
        name: [{"item": str(i), "topic": t, "answered_by": [a for a in anchors if a in present] or AUTHORS}
               for i, _, t, anchors, _ in items]
        for name, items in (("CLEAR", CLEAR_ITEMS), ("TRIPOD+AI", TRIPOD_AI_ITEMS))}
    return section


def _empty(section: Section) -> bool:
    """A section that holds nothing but 'not available' notes answers no item."""
    return all('class="na"' in block for block in section.blocks)
