package trainer

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/drift"
	"github.com/triage-ml/triage/featurizer"
)

// DefaultMonitorWindow is the window size the drift thresholds are
// bootstrapped for, and the monitor's default count window.
const DefaultMonitorWindow = 500

// tokenSource is what an Embedder offers when the monitor's input length
// should count WordPiece tokens as serving does (*inference.Encoder).
type tokenSource interface {
	Tokens(text string) ([]int64, bool)
	UnknownID() int64
}

// referenceInputs are the validation split as the monitor will see it.
type referenceInputs struct {
	labels   []string
	texts    []string
	y        []int
	x        []featurizer.Vector // the head's inputs (n-grams and scaled embedding)
	ngram    bool                // x holds n-gram features (their counts survive AppendDense)
	emb      []float32           // validation embeddings, [n][dim]; nil without an encoder
	centroid []float32           // mean training embedding; nil without an encoder
	embedder Embedder
	window   int
	seed     uint64
}

// monitoringReference scores the validation split with the final head and
// builds the drift monitor's reference from it: label shares, temperature
// (calibration), ATC threshold and per-statistic alarm thresholds.
func monitoringReference(m *Linear, in referenceInputs) (*drift.Reference, error) {
	n := len(in.texts)
	tok, _ := in.embedder.(tokenSource)
	unk := int64(-1)
	if tok != nil {
		unk = tok.UnknownID()
	}
	dim := 0
	if in.emb != nil {
		dim = len(in.emb) / max(n, 1)
	}
	obs := make([]drift.Observation, n)
	probs := make([][]float64, n)
	z := make([]float32, m.NumClasses)
	for i := range n {
		m.Scores(in.x[i], z)
		softmaxInPlace(z)
		row := make([]float64, len(z))
		best, second := 0, -1
		for c, p := range z {
			row[c] = float64(p)
			if p > z[best] {
				best = c
			}
		}
		for c := range z {
			if c != best && (second < 0 || z[c] > z[second]) {
				second = c
			}
		}
		probs[i] = row
		var features featurizer.Vector
		var tokens []int64
		if in.ngram {
			features = in.x[i]
		}
		if tok != nil {
			tokens, _ = tok.Tokens(in.texts[i])
		}
		length, oov := drift.MeasureInput(in.texts[i], features, tokens, unk)
		o := drift.Observation{Label: best, Confidence: row[best], Tokens: length, OOVRate: oov,
			EmbedDist: math.NaN(), True: in.y[i]}
		if second >= 0 {
			o.Margin = row[best] - row[second]
		} else {
			o.Margin = 1
		}
		if dim > 0 {
			o.EmbedDist = drift.CosineDistance(in.emb[i*dim:(i+1)*dim], in.centroid)
		}
		obs[i] = o
	}
	ref, err := drift.BuildReference(in.labels, obs, probs, drift.ReferenceOptions{WindowSize: in.window, Seed: in.seed})
	if err != nil {
		return nil, fmt.Errorf("drift reference: %w", err)
	}
	return ref, nil
}

// domainFile builds the domain-classifier reference from the validation
// texts, as a bundle file; nil (no file, the monitor skips the test) when
// the split is too small to measure the test's null distribution.
func domainFile(texts []string, seed uint64, log *slog.Logger) []bundle.CopyFile {
	d, err := drift.BuildDomainReference(texts, seed)
	if err != nil {
		log.Warn("no domain-classifier reference: the monitor skips that test for this model", "err", err)
		return nil
	}
	data, err := json.Marshal(d)
	if err != nil {
		log.Warn("domain-classifier reference not encoded", "err", err)
		return nil
	}
	log.Info("domain-classifier reference measured", "texts", len(d.Texts), "null_auc_mean", d.NullMean,
		"null_auc_sd", d.NullSD, "threshold", d.Threshold)
	return []bundle.CopyFile{{Name: bundle.DomainFile, Data: data}}
}

// centroidOf is the bundle encoder's centroid, nil without an encoder.
func centroidOf(e *bundle.EncoderSpec) []float32 {
	if e == nil {
		return nil
	}
	return e.Centroid
}

// centroid is the mean of n embeddings of dim values each.
func centroid(emb []float32, dim int) []float32 {
	if dim == 0 || len(emb) == 0 {
		return nil
	}
	c := make([]float64, dim)
	n := len(emb) / dim
	for i := range n {
		for j, v := range emb[i*dim : (i+1)*dim] {
			c[j] += float64(v)
		}
	}
	out := make([]float32, dim)
	for j := range c {
		out[j] = float32(c[j] / float64(n))
	}
	return out
}

// evidence is what a bundle's monitoring and abstention are measured on:
// the split its final head has not seen, and the training embeddings.
type evidence struct {
	labels   []string
	texts    []string            // held-out texts
	x        []featurizer.Vector // their head inputs
	y        []int
	ngram    bool
	emb      []float32 // held-out embeddings; nil without an encoder
	trE      []float32 // training embeddings (the centroid, abstention)
	trY      []int
	dim      int
	embedder Embedder
	window   int
	seed     uint64
	target   float64 // abstention precision
}

// describe gives man what serving watches it by (the embedding centroid,
// the drift reference, the abstention rule) and returns the domain-reference
// file to ship. Nothing here fails a run: a model whose reference cannot be
// measured is served and watched without alarms.
func describe(man *bundle.Manifest, m *Linear, ev evidence, log *slog.Logger) []bundle.CopyFile {
	if man.Encoder != nil {
		man.Encoder.Centroid = centroid(ev.trE, ev.dim)
	}
	var err error
	man.Monitoring, err = monitoringReference(m, referenceInputs{labels: ev.labels, texts: ev.texts, y: ev.y, x: ev.x,
		ngram: ev.ngram, emb: ev.emb, centroid: centroidOf(man.Encoder), embedder: ev.embedder, window: ev.window, seed: ev.seed})
	if err != nil {
		log.Warn("no drift reference: the model is monitored without alarms", "err", err)
	} else {
		log.Info("drift reference measured", "temperature", man.Monitoring.Temperature, "ece_before", man.Monitoring.ECEBefore,
			"ece_after", man.Monitoring.ECEAfter, "window", man.Monitoring.WindowSize, "false_alarm_rate", man.Monitoring.FalseAlarmRate)
	}
	setAbstain(man, m, abstainInputs{x: ev.x, y: ev.y, vaE: ev.emb, trE: ev.trE, trY: ev.trY, dim: ev.dim, target: ev.target}, log)
	return domainFile(ev.texts, ev.seed, log)
}
