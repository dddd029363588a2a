"""Project scaffolding: ``kyklos init DIR`` writes a working project from ``template/``."""

from kyklos.scaffold.init import DATA_FILE, TEMPLATE, InitResult, project_name_for, scaffold

__all__ = ["DATA_FILE", "TEMPLATE", "InitResult", "project_name_for", "scaffold"]
