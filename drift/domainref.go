package drift

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Domain-test sizes: the reference keeps 2×DomainSample validation texts;
// at serving a window's sample of up to DomainSample texts is compared with
// a random DomainSample of them, the sizes the null runs used.
const (
	DomainSample   = 300
	domainNullRuns = 12
	// domainFloor keeps the threshold off the null's noise on tiny
	// references, where a few runs can have a very small spread.
	domainFloor = 0.6
)

// DomainReference is the domain-classifier test's reference: validation
// texts, and the AUC a window from the same distribution reaches by chance.
type DomainReference struct {
	Texts []string `json:"texts"`
	// NullMean and NullSD describe the AUC of reference-vs-reference splits
	// of Texts (DomainSample each); Threshold = max(0.6, mean + 4 sd).
	NullMean  float64 `json:"null_mean"`
	NullSD    float64 `json:"null_sd"`
	NullRuns  int     `json:"null_runs"`
	Threshold float64 `json:"threshold"`
}

// BuildDomainReference samples up to 2×DomainSample texts and measures the
// test's null distribution on them: random halves told apart by
// DomainAUC. A window alarms when its AUC is above Threshold, 4 null
// standard deviations over the null mean (the null is close to normal,
// so one window in ~30,000 by chance).
func BuildDomainReference(texts []string, seed uint64) (*DomainReference, error) {
	if len(texts) < 2*minReferenceRows {
		return nil, fmt.Errorf("domain reference: %d texts, need at least %d", len(texts), 2*minReferenceRows)
	}
	rng := rand.New(rand.NewPCG(seed, 0x646f6d7265660000))
	idx := rng.Perm(len(texts))[:min(len(texts), 2*DomainSample)]
	ref := &DomainReference{Texts: make([]string, len(idx)), NullRuns: domainNullRuns}
	for i, j := range idx {
		ref.Texts[i] = texts[j]
	}
	aucs := make([]float64, domainNullRuns)
	for r := range aucs {
		a, b := ref.split(rng)
		auc, err := DomainAUC(a, b, seed+uint64(r))
		if err != nil {
			return nil, fmt.Errorf("domain reference: %w", err)
		}
		aucs[r] = auc
	}
	var sum, sq float64
	for _, a := range aucs {
		sum += a
	}
	ref.NullMean = sum / float64(len(aucs))
	for _, a := range aucs {
		sq += (a - ref.NullMean) * (a - ref.NullMean)
	}
	ref.NullSD = math.Sqrt(sq / float64(len(aucs)-1))
	ref.Threshold = max(domainFloor, ref.NullMean+4*ref.NullSD)
	return ref, nil
}

// split draws two disjoint halves of the reference texts.
func (d *DomainReference) split(rng *rand.Rand) (a, b []string) {
	p := rng.Perm(len(d.Texts))
	h := len(p) / 2
	for i, j := range p {
		if i < h {
			a = append(a, d.Texts[j])
		} else {
			b = append(b, d.Texts[j])
		}
	}
	return a, b
}

// Test compares a window's texts with a random DomainSample of the
// reference texts and returns the AUC and whether it alarms.
func (d *DomainReference) Test(window []string, seed uint64) (auc float64, alarm bool, err error) {
	if d == nil || len(d.Texts) == 0 {
		return math.NaN(), false, errors.New("domain test: no reference texts")
	}
	rng := rand.New(rand.NewPCG(seed, 0x646f6d7465737400))
	ref := make([]string, 0, DomainSample)
	for _, j := range rng.Perm(len(d.Texts)) {
		if len(ref) == DomainSample {
			break
		}
		ref = append(ref, d.Texts[j])
	}
	auc, err = DomainAUC(ref, window, seed)
	if err != nil {
		return math.NaN(), false, err
	}
	return auc, auc > d.Threshold, nil
}
