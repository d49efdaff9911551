"""Adapters that let external agents and frameworks train on text_gym envs (see docs/adapters/)."""
