"""The paper's reference tables (data files only; see README.md)."""
