"""Recipes: whole pipelines built from the library (the toy end-to-end run, the runner smoke)."""
