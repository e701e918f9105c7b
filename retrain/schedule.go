package retrain

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/triage-ml/triage/snapshot"
)

// Policy is when a model retrains on its own (besides on demand).
type Policy struct {
	Model string
	// Cron is a schedule in cron syntax, with an optional seconds field
	// ("0 3 * * 1", "@weekly", "*/10 * * * * *"); "" for none.
	Cron string
	// Threshold retrains once this many labels arrived since the model's
	// latest snapshot; 0 for none.
	Threshold int
}

// cronParser accepts standard five-field specs, a leading seconds field
// and descriptors such as @daily.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Validate reports a policy that cannot run.
func (p Policy) Validate() error {
	if p.Cron != "" {
		if _, err := cronParser.Parse(p.Cron); err != nil {
			return fmt.Errorf("retrain schedule %q of %s: %w", p.Cron, p.Model, err)
		}
	}
	if p.Threshold < 0 {
		return fmt.Errorf("retrain threshold %d of %s: must be >= 0", p.Threshold, p.Model)
	}
	return nil
}

// Run starts runs by the policies until ctx ends: cron ticks, and a check
// of new labels every checkEvery. A tick while the model's run is still
// going starts nothing (ErrRunning is logged, not queued).
func (r *Runner) Run(ctx context.Context, policies []Policy, checkEvery time.Duration) error {
	c := cron.New(cron.WithParser(cronParser))
	for _, p := range policies {
		if err := p.Validate(); err != nil {
			return err
		}
		if p.Cron == "" {
			continue
		}
		model := p.Model
		if _, err := c.AddFunc(p.Cron, func() { r.start(ctx, model, TriggerSchedule) }); err != nil {
			return fmt.Errorf("retrain schedule of %s: %w", model, err)
		}
	}
	c.Start()
	defer func() { <-c.Stop().Done() }()
	var tick <-chan time.Time
	if r.cfg.Feedback != nil && checkEvery > 0 && hasThreshold(policies) {
		t := time.NewTicker(checkEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			r.wg.Wait()
			return nil
		case <-tick:
			r.checkThresholds(ctx, policies)
		}
	}
}

func hasThreshold(ps []Policy) bool {
	for _, p := range ps {
		if p.Threshold > 0 {
			return true
		}
	}
	return false
}

// start runs a retrain in the background unless one is going.
func (r *Runner) start(ctx context.Context, model, trigger string) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		res, err := r.Retrain(ctx, model, trigger, "triage retrain ("+trigger+")")
		switch {
		case errors.Is(err, ErrRunning):
			r.log.Info("retrain: a run is in progress; this trigger starts none", "model", model, "trigger", trigger)
		case err != nil && ctx.Err() == nil:
			r.log.Error("retrain failed", "model", model, "trigger", trigger, "err", err)
		case err == nil:
			r.log.Info("retrain done", "model", model, "trigger", trigger, "version", res.Version, "promoted", res.Promoted,
				"seconds", res.Seconds)
		}
	}()
}

// checkThresholds starts a run for each model with enough new labels since
// its latest snapshot.
func (r *Runner) checkThresholds(ctx context.Context, policies []Policy) {
	fb, err := snapshot.ReadFeedback(ctx, *r.cfg.Feedback)
	if err != nil {
		r.log.Warn("retrain: read feedback for the label threshold", "err", err)
		return
	}
	for _, p := range policies {
		if p.Threshold <= 0 {
			continue
		}
		since := map[int32]int64{}
		if latest, err := r.cfg.Snapshots.Latest(p.Model); err == nil && latest.Manifest.Feedback != nil {
			since = latest.Manifest.Feedback.Offsets
		}
		n := 0
		for _, l := range fb.For(p.Model) {
			if l.Offset >= since[l.Partition] {
				n++
			}
		}
		if n >= p.Threshold {
			r.log.Info("retrain: label threshold reached", "model", p.Model, "new_labels", n, "threshold", p.Threshold)
			r.start(ctx, p.Model, TriggerThreshold)
		}
	}
}
