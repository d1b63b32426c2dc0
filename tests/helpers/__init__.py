"""Shared test helpers (tiny VIMH datasets written into tmp_path)."""
