"""Light Bulb's formats in and out: YAML configs, the judgements file (CSV / JSONL), demo set-up.

Like doccano's data_import / data_export: it sits above projects and labeling (it writes projects,
items and judgements through their services), and nothing below imports from here.
"""
