"""Stable-Baselines3 adapters; each module imports SB3 itself (``pip install 'text_gym[sb3]'``)."""
