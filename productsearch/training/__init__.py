"""Training and building a generation's weights (build_models.py): the demo preset (frozen text tower,
image projection trained into its space, the bilingual held-out quality gate, the text tower's served
runtime), `demo-minilm`, the real-checkpoint presets, and what every preset writes last (model.py
entry points, device configs, manifest). May import every room below control; control never imports it.
"""
