"""Reference ids from Hugging Face `tokenizers` for the Go WordPiece parity test.

Usage: hf_tokenize.py TOKENIZER_JSON < texts (one per line) > ids (one JSON list per line)
"""
import json
import sys

from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
tok.no_truncation()
tok.no_padding()
texts = sys.stdin.read().split("\n")[:-1]
out = sys.stdout
for text in texts:
    out.write(json.dumps(tok.encode(text).ids) + "\n")
