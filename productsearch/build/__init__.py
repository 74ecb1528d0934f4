"""Building a generation's weights (build_models.py): the demo preset (catalog, frozen text tower,
trained image tower, held-out quality), the real-checkpoint presets, and what every preset
writes last (model.py entry points, device configs, manifest), and the demo's held-out
evaluation query set. May import every other room.
"""
