"""The stages: each a config dataclass + ``run(config, ctx) -> StageResult``, registered once in
:data:`mobilebert_kit.stages.base.STAGES` (the contract lives in :mod:`.base`); and the report's parts
(report_curves, stage_minutes, compare, compare_report, predictions).
"""
