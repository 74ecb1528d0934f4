"""The towers: text and image encoders, demo and pretrained, and the one path that loads a
served generation's towers (loading.py). Imported by the runtime's encoder models and by the
build; never imports control or build.
"""
