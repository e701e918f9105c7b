"""Writes a small randomly initialised MPNet checkpoint (the fine-tuning
suite's MPNet case): config.json, model.safetensors and MPNet's tokenizer
files over BERT's uncased vocabulary with MPNet's special tokens, as
all-mpnet-base-v2 lays them out (<s> <pad> </s> <unk>, BERT's tokens, <mask>).

Usage: tiny_mpnet.py --bert-vocab VOCAB_TXT --out DIR
"""

import argparse
import json
import os

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import MPNetConfig, MPNetModel

SPECIAL = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "pad_token": "<pad>",
           "unk_token": "[UNK]", "mask_token": "<mask>"}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bert-vocab", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    os.makedirs(a.out)
    with open(a.bert_vocab, encoding="utf-8") as f:
        bert = [line.rstrip("\n") for line in f]
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + bert + ["<mask>"]
    with open(os.path.join(a.out, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<mask>"])
    tok.save(os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(dict(SPECIAL, tokenizer_class="MPNetTokenizer", do_lower_case=True, model_max_length=128), f)
    torch.manual_seed(7)
    cfg = MPNetConfig(vocab_size=len(bert) + 5, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=130)
    MPNetModel(cfg, add_pooling_layer=False).save_pretrained(a.out, safe_serialization=True)


if __name__ == "__main__":
    main()
