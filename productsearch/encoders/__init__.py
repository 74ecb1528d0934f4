"""The towers: text and image encoders, demo and pretrained, and the one path that loads a
served generation's towers (loading.py). Imported by the runtime's encoder models and by
training; imports only core (tests/unit/test_layout.py).
"""
