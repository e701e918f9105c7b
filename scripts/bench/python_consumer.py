"""Python streaming baseline: the Kafka classifier a Python user would write instead of `triage consumer`.

A confluent-kafka Consumer (one group; run N processes for N-way parallelism) reads
input records of Triage's schema (JSON {"id", "text", ...}, key = id), classifies them
in micro-batches (consume(num_messages=256, timeout=5 ms), like Triage's batched run)
with a pickled scikit-learn pipeline (TF-IDF word 1-2 + char_wb 1-4 grams, logistic
regression; see train_sklearn.py), and produces one JSON prediction per input (id,
input topic/partition/offset, label, confidence, top-5 scores, model, classified_at,
latency_ms; key = id) to the output topic.

Delivery is AT-LEAST-ONCE, which is fine for a baseline: after each batch it flushes
the producer (waits for the broker's acks) and only then commits the consumed offsets
(asynchronously). A crash between flush and commit re-delivers that batch. Triage's
consumer is exactly-once (transactions), so this baseline does strictly less work.
Records that are not valid JSON with a text are skipped (no dead-letter topic).

    python scripts/bench/python_consumer.py --brokers 127.0.0.1:9092 --group g \
        --input in --output out --model .cache/bench/sklearn-banking77.pkl

It prints nothing per message. SIGTERM or SIGINT stops it cleanly (flush, commit,
close). --start-paused (benchmarks): keep assigned partitions paused until SIGUSR1, so
that several processes can join the group before any of them consumes; without it
the first process would take every partition and a rebalance would follow.
"""
import argparse
import pickle
import signal
import sys
import time
from datetime import datetime, timezone

import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaException, Producer

stop = False
released = True


def main(argv=None):
    global released
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--brokers", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--input", required=True, help="input topic")
    p.add_argument("--output", required=True, help="predictions topic")
    p.add_argument("--model", required=True, help="pickle written by train_sklearn.py")
    p.add_argument("--batch-max", type=int, default=256)
    p.add_argument("--batch-wait", type=float, default=0.005, help="seconds consume() waits to fill a batch")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--start-paused", action="store_true", help="hold partitions until SIGUSR1 (benchmarks)")
    a = p.parse_args(argv)

    with open(a.model, "rb") as f:
        bundle = pickle.load(f)
    pipe = bundle["pipeline"]
    classes = [str(c) for c in pipe.classes_]
    model_ref = {"name": bundle.get("name", "sklearn"), "version": bundle.get("version", "")}
    k = min(a.top_k, len(classes))

    def on_term(*_):
        global stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    consumer = Consumer({
        "bootstrap.servers": a.brokers,
        "group.id": a.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    producer = Producer({"bootstrap.servers": a.brokers, "linger.ms": 5})

    released = not a.start_paused

    def on_assign(c, partitions):
        if not released:
            c.pause(partitions)

    def on_release(*_):
        global released
        released = True
        parts = consumer.assignment()
        if parts:
            consumer.resume(parts)

    signal.signal(signal.SIGUSR1, on_release)
    consumer.subscribe([a.input], on_assign=on_assign)

    try:
        while not stop:
            msgs = consumer.consume(num_messages=a.batch_max, timeout=a.batch_wait)
            if not msgs:
                continue
            ids, texts, refs, stamps = [], [], [], []
            for m in msgs:
                if m.error():
                    continue
                try:
                    rec = orjson.loads(m.value())
                    text = rec["text"]
                except Exception:
                    continue  # malformed: skipped (no dead-letter topic in this baseline)
                if not isinstance(text, str):
                    continue
                ids.append(str(rec.get("id", "")))
                texts.append(text)
                refs.append({"topic": m.topic(), "partition": m.partition(), "offset": m.offset()})
                stamps.append(m.timestamp()[1])
            if texts:
                probs = pipe.predict_proba(texts)
                top = np.argsort(-probs, axis=1)[:, :k]
                now = time.time()
                at = datetime.fromtimestamp(now, timezone.utc).isoformat()
                for i, row in enumerate(top):
                    pred = {
                        "id": ids[i],
                        "input": refs[i],
                        "label": classes[row[0]],
                        "confidence": float(probs[i, row[0]]),
                        "scores": [{"label": classes[j], "score": float(probs[i, j])} for j in row],
                        "model": model_ref,
                        "classified_at": at,
                        "latency_ms": max(0.0, now * 1000 - stamps[i]) if stamps[i] > 0 else 0.0,
                    }
                    while True:
                        try:
                            producer.produce(a.output, key=ids[i].encode(), value=orjson.dumps(pred))
                            break
                        except BufferError:
                            producer.poll(0.05)  # local queue full: let deliveries drain
                producer.poll(0)
            # At-least-once: predictions acknowledged before the offsets move.
            if producer.flush(30) != 0:
                raise KafkaException("predictions not delivered within 30 s")
            consumer.commit(asynchronous=True)
    finally:
        producer.flush(10)
        try:
            consumer.commit(asynchronous=False)
        except KafkaException:
            pass  # nothing consumed since the last commit
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
