"""Fine-tunes a BERT-architecture checkpoint (BERT or MPNet) for text classification.

The one place Triage runs Python: `triage train --fine-tune` starts this
script (alone, or under torchrun for data-parallel training), reads the JSON
events it prints on stdout, then converts the checkpoint it writes with
Triage's own Go converter. Serving never sees PyTorch.

Model: the checkpoint's BertModel (or MPNetModel), pooled (mean over the attention mask, or
[CLS]) into a sentence embedding, then dropout and one linear layer. That is
exactly the shape of a Triage "encoder" bundle (encoder.onnx, then the linear
softmax head), so the bundle serves unchanged.

Input: --train and --val JSONL files of {"text": str, "label": int}.
Output (--out, written by rank 0): model.safetensors + config.json + the
tokenizer files (the fine-tuned encoder, a plain BERT or MPNet checkpoint),
head.safetensors (classifier.weight [labels, hidden], classifier.bias) and
finetune.json (the run's summary and per-epoch curve).

Events (stdout, one JSON object a line, rank 0 only): start, step, epoch,
done, error. Exit status 2 is a refused setting (the error event says what
to change); nothing is written to --out then.
"""

import argparse
import json
import math
import os
import random
import resource
import shutil
import sys
import time

EXIT_REFUSED = 2
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def emit(event, **fields):
    if int(os.environ.get("RANK", "0")) != 0:
        return
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def refuse(message):
    emit("error", message=message)
    print("finetune: " + message, file=sys.stderr)
    sys.exit(EXIT_REFUSED)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="BERT checkpoint folder (config.json, model.safetensors, tokenizer)")
    p.add_argument("--train", required=True, help="training JSONL: text, label (int)")
    p.add_argument("--val", required=True, help="validation JSONL: text, label (int)")
    p.add_argument("--num-labels", type=int, required=True)
    p.add_argument("--out", required=True, help="folder for the fine-tuned checkpoint (must not exist)")
    p.add_argument("--pooling", choices=("mean", "cls"), default="mean")
    p.add_argument("--max-length", type=int, default=0, help="tokens per text; 0 = the 99th percentile of training lengths")
    p.add_argument("--model-max-length", type=int, default=0, help="cap on --max-length (0 = max_position_embeddings)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many optimiser steps (0 = no cap; for smoke tests)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32, help="per process")
    p.add_argument("--warmup", type=float, default=0.1, help="share of steps with a linearly rising learning rate")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=2, help="stop after this many epochs without validation gain")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = CPUs / processes)")
    p.add_argument("--log-every", type=int, default=20, help="steps between step events")
    p.add_argument("--logits-texts", help="JSON list of texts: the best model's logits of them go to probe-logits.json in --out")
    return p.parse_args(argv)


def read_jsonl(path):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                texts.append(r["text"])
                labels.append(int(r["label"]))
    return texts, labels


def check_checkpoint(path):
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        refuse(f"checkpoint {path!r} has no config.json: give a Hugging Face BERT checkpoint folder")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    kind = cfg.get("model_type", "")
    if kind not in ("bert", "mpnet", ""):
        refuse(f"checkpoint {path!r} is model_type {kind!r}: Triage's converter reads BERT-architecture checkpoints only (bert, mpnet)")
    if not os.path.isfile(os.path.join(path, "model.safetensors")):
        refuse(f"checkpoint {path!r} has no model.safetensors (Triage reads safetensors weights)")


def main(argv):
    a = parse_args(argv)
    check_checkpoint(a.checkpoint)
    if a.num_labels < 2:
        refuse(f"--num-labels {a.num_labels}: need at least 2")
    if os.path.exists(a.out):
        refuse(f"--out {a.out!r} exists: give a new folder")

    try:
        import numpy as np
        import torch
        import torch.distributed as dist
        from safetensors.torch import save_file
        from transformers import AutoModel, AutoTokenizer
    except ImportError as e:
        refuse(f"{e}: create the fine-tuning environment with scripts/finetune-env.sh")

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if a.device == "cuda":
        if not torch.cuda.is_available():
            refuse("--device cuda: PyTorch sees no CUDA GPU here (torch.cuda.is_available() is false); use --device cpu")
        if local_rank >= torch.cuda.device_count():
            refuse(f"--nproc: process {local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(a.threads or max(1, (os.cpu_count() or 1) // world))
    if world > 1:
        dist.init_process_group("nccl" if a.device == "cuda" else "gloo")

    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)

    tr_texts, tr_labels = read_jsonl(a.train)
    va_texts, va_labels = read_jsonl(a.val)
    if not tr_texts or not va_texts:
        refuse("the training and validation files must both hold rows")
    bad = [y for y in tr_labels + va_labels if not 0 <= y < a.num_labels]
    if bad:
        refuse(f"label id {bad[0]} outside [0, {a.num_labels})")

    tok = AutoTokenizer.from_pretrained(a.checkpoint)
    bert = AutoModel.from_pretrained(a.checkpoint, add_pooling_layer=False)
    # MPNet's positions start after its padding index (1), so two rows of
    # its table are never reached.
    positions = bert.config.max_position_embeddings - (2 if bert.config.model_type == "mpnet" else 0)
    model_cap = a.model_max_length or positions
    max_len = a.max_length
    tr_lengths = [len(ids) for ids in tok(tr_texts, add_special_tokens=True)["input_ids"]]
    if max_len == 0:
        # The 99th percentile of the training lengths, rounded up to a
        # multiple of 8: longer texts are rare, and attention is quadratic.
        lengths = sorted(tr_lengths)
        p99 = lengths[min(len(lengths) - 1, int(math.ceil(0.99 * len(lengths))) - 1)]
        max_len = max(16, int(math.ceil(p99 / 8.0)) * 8)
    max_len = min(max_len, model_cap)

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert
            self.dropout = torch.nn.Dropout(a.dropout)
            self.classifier = torch.nn.Linear(bert.config.hidden_size, a.num_labels)

        def embed(self, ids, mask):
            h = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            if a.pooling == "cls":
                return h[:, 0]
            m = mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

        def forward(self, ids, mask):
            return self.classifier(self.dropout(self.embed(ids, mask)))

    model = Classifier().to(device)
    core = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if a.device == "cuda" else None)

    def encode(texts):
        return tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")

    # Each process takes every world-th example of a shared shuffle.
    n = len(tr_texts)
    per_epoch = math.ceil((n // world) / a.batch_size)
    total = per_epoch * a.epochs
    if a.max_steps:
        total = min(total, a.max_steps)
    warm = int(a.warmup * total)

    decay = [p for name, p in core.named_parameters() if p.ndim > 1 and "LayerNorm" not in name]
    no_decay = [p for name, p in core.named_parameters() if not (p.ndim > 1 and "LayerNorm" not in name)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    amp_dtype = None
    if a.device == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def evaluate(texts, labels):
        # In fp32 without autocast, as ONNX Runtime will serve it.
        core.eval()
        preds, loss_sum = [], 0.0
        with torch.no_grad():
            for i in range(0, len(texts), 128):
                b = encode(texts[i:i + 128])
                y = torch.tensor(labels[i:i + 128], device=device)
                logits = core(b["input_ids"].to(device), b["attention_mask"].to(device)).float()
                loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
                preds += logits.argmax(1).tolist()
        core.train()
        p, y = np.array(preds), np.array(labels)
        f1s = []
        for c in np.unique(y):  # macro F1 over the labels present, as Triage's scoring
            tp = float(((p == c) & (y == c)).sum())
            denom = float((p == c).sum() + (y == c).sum())
            f1s.append(2 * tp / denom if denom else 0.0)
        return float((p == y).mean()), loss_sum / len(texts), float(np.mean(f1s))

    emit("start", train=n, validation=len(va_texts), labels=a.num_labels, max_length=max_len, epochs=a.epochs,
         steps=total, batch_size=a.batch_size, processes=world, device=a.device, lr=a.lr,
         amp=str(amp_dtype).replace("torch.", "") if amp_dtype else "off", pooling=a.pooling)
    started = time.time()
    step, best_acc, best_epoch, best_state, stale = 0, -1.0, 0, None, 0
    curve = []
    model.train()
    for epoch in range(1, a.epochs + 1):
        order = list(range(n))
        random.Random(a.seed + epoch).shuffle(order)
        # Equal shares, so every process runs the same number of steps
        # (DDP needs that); the few left over differ each epoch.
        mine = order[rank:(n // world) * world:world]
        # Batches of similar lengths (sorted within shuffled groups of 50
        # batches, then the batches shuffled): each is padded to its own
        # longest text, so this nearly halves the padded tokens.
        rng = random.Random(a.seed * 1000 + epoch * 10 + rank)
        group = 50 * a.batch_size
        batches = []
        for g in range(0, len(mine), group):
            chunk = sorted(mine[g:g + group], key=lambda j: tr_lengths[j])
            batches += [chunk[k:k + a.batch_size] for k in range(0, len(chunk), a.batch_size)]
        rng.shuffle(batches)
        loss_sum, seen = 0.0, 0
        for idx in batches:
            if step >= total:
                break
            b = encode([tr_texts[j] for j in idx])
            y = torch.tensor([tr_labels[j] for j in idx], device=device)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(b["input_ids"].to(device), b["attention_mask"].to(device))
                loss = torch.nn.functional.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(core.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            if step % a.log_every == 0 or step == total:
                emit("step", step=step, steps=total, epoch=epoch, loss=loss.item(), lr=sched.get_last_lr()[0],
                     seconds=round(time.time() - started, 1))
        stop = torch.zeros(1, device=device)  # NCCL broadcasts GPU tensors only
        if rank == 0:
            acc, vloss, f1 = evaluate(va_texts, va_labels)
            curve.append({"epoch": epoch, "train_loss": loss_sum / max(1, seen), "val_accuracy": acc, "val_loss": vloss,
                          "val_macro_f1": f1})
            emit("epoch", epoch=epoch, epochs=a.epochs, train_loss=loss_sum / max(1, seen), val_accuracy=acc,
                 val_loss=vloss, val_macro_f1=f1, seconds=round(time.time() - started, 1))
            if acc > best_acc:
                best_acc, best_epoch, stale = acc, epoch, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in core.state_dict().items()}
            else:
                stale += 1
            if stale >= a.patience or step >= total:
                stop[0] = 1
        if world > 1:
            dist.broadcast(stop, 0)  # every process stops at the same epoch
        if stop[0]:
            break

    if rank == 0:
        core.load_state_dict(best_state)
        core.eval()
        tmp = a.out + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        bert_state = {k[len("bert."):]: v.contiguous() for k, v in best_state.items() if k.startswith("bert.")}
        save_file(bert_state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        save_file({"classifier.weight": best_state["classifier.weight"].contiguous(),
                   "classifier.bias": best_state["classifier.bias"].contiguous()},
                  os.path.join(tmp, "head.safetensors"), metadata={"format": "pt"})
        bert.config.to_json_file(os.path.join(tmp, "config.json"))
        for name in TOKENIZER_FILES:
            src = os.path.join(a.checkpoint, name)
            if os.path.isfile(src):
                shutil.copy(src, tmp)
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        summary = {"val_accuracy": best_acc, "best_epoch": best_epoch, "epochs_run": len(curve), "steps": step,
                   "max_length": max_len, "pooling": a.pooling, "lr": a.lr, "batch_size": a.batch_size,
                   "processes": world, "device": a.device, "seed": a.seed, "warmup": a.warmup,
                   "weight_decay": a.weight_decay, "dropout": a.dropout, "seconds": round(time.time() - started, 1),
                   "peak_rss_mib": round(peak_mib, 1), "torch": torch.__version__, "curve": curve}
        with open(os.path.join(tmp, "finetune.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
        if a.logits_texts:
            with open(a.logits_texts, encoding="utf-8") as f:
                probe = json.load(f)
            with torch.no_grad():
                b = encode(probe)
                logits = core(b["input_ids"].to(device), b["attention_mask"].to(device)).float().cpu().tolist()
            with open(os.path.join(tmp, "probe-logits.json"), "w", encoding="utf-8") as f:
                json.dump({"texts": probe, "logits": logits}, f)
        os.rename(tmp, a.out)  # the folder appears whole or not at all
        emit("done", **{k: v for k, v in summary.items() if k != "curve"})
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
