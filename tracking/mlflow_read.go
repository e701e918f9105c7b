package tracking

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

type runJSON struct {
	Info struct {
		RunID        string `json:"run_id"`
		RunUUID      string `json:"run_uuid"` // older servers
		ExperimentID string `json:"experiment_id"`
		RunName      string `json:"run_name"`
		Status       string `json:"status"`
		StartTime    millis `json:"start_time"`
		EndTime      millis `json:"end_time"`
		ArtifactURI  string `json:"artifact_uri"`
	} `json:"info"`
	Data struct {
		Metrics []metricRecJSON `json:"metrics"`
		Params  []kv            `json:"params"`
		Tags    []kv            `json:"tags"`
	} `json:"data"`
}

type metricRecJSON struct {
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	Timestamp millis          `json:"timestamp"`
	Step      millis          `json:"step"`
}

func (m metricRecJSON) point() (MetricPoint, error) {
	v, err := parseFloatJSON(m.Value)
	if err != nil {
		return MetricPoint{}, fmt.Errorf("metric %s: %w", m.Key, err)
	}
	return MetricPoint{Step: int64(m.Step), Value: v, Time: msTime(m.Timestamp)}, nil
}

// record is r as a RunRecord; Metrics hold the latest points only.
func (r runJSON) record(experiment string) (RunRecord, error) {
	rec := RunRecord{ID: cmp.Or(r.Info.RunID, r.Info.RunUUID), Experiment: experiment, Name: r.Info.RunName,
		Status: r.Info.Status, StartTime: msTime(r.Info.StartTime), ArtifactURI: r.Info.ArtifactURI,
		Params: map[string]string{}, Tags: map[string]string{}, Metrics: map[string][]MetricPoint{}}
	if r.Info.EndTime > 0 {
		t := msTime(r.Info.EndTime)
		rec.EndTime = &t
	}
	for _, p := range r.Data.Params {
		rec.Params[p.Key] = p.Value
	}
	for _, t := range r.Data.Tags {
		rec.Tags[t.Key] = t.Value
	}
	rec.ParentID = rec.Tags["mlflow.parentRunId"]
	for _, m := range r.Data.Metrics {
		p, err := m.point()
		if err != nil {
			return RunRecord{}, fmt.Errorf("run %s: %w", rec.ID, err)
		}
		rec.Metrics[m.Key] = []MetricPoint{p}
	}
	return rec, nil
}

// experimentName is the name of experiment id, cached.
func (c *MLflow) experimentName(ctx context.Context, id string) (string, error) {
	c.mu.Lock()
	name, ok := c.expNames[id]
	c.mu.Unlock()
	if ok {
		return name, nil
	}
	var got struct {
		Experiment experimentJSON `json:"experiment"`
	}
	if err := c.call(ctx, "experiments/get", apiGet("experiments/get", url.Values{"experiment_id": {id}}), &got); err != nil {
		return "", fmt.Errorf("experiment %s: %w", id, err)
	}
	c.mu.Lock()
	c.expNames[id] = got.Experiment.Name
	c.mu.Unlock()
	return got.Experiment.Name, nil
}

// pageSize is what one search asks for (MLflow's runs/search allows 50000,
// experiments/search 50000; smaller pages keep each answer quick).
const pageSize = 1000

// List searches runs/search, newest first. experiment "" lists every
// active experiment's runs; an unknown experiment has none.
func (c *MLflow) List(ctx context.Context, experiment string, limit int) ([]RunRecord, error) {
	var ids []string
	if experiment != "" {
		exp, err := c.experimentByName(ctx, experiment)
		if errors.Is(err, ErrNotFound) {
			return []RunRecord{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list runs of %q: %w", experiment, err)
		}
		c.mu.Lock()
		c.expNames[exp.ID] = exp.Name
		c.mu.Unlock()
		ids = []string{exp.ID}
	} else {
		exps, err := c.searchExperiments(ctx)
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		for _, e := range exps {
			ids = append(ids, e.ID)
		}
	}
	out := []RunRecord{}
	if len(ids) == 0 {
		return out, nil
	}
	token := ""
	for {
		n := pageSize
		if limit > 0 {
			n = min(n, limit-len(out))
		}
		body := map[string]any{"experiment_ids": ids, "max_results": n, "order_by": []string{"attributes.start_time DESC"}}
		if token != "" {
			body["page_token"] = token
		}
		var got struct {
			Runs  []runJSON `json:"runs"`
			Token string    `json:"next_page_token"`
		}
		if err := c.call(ctx, "runs/search", api(http.MethodPost, "runs/search", body), &got); err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		for _, r := range got.Runs {
			name, err := c.experimentName(ctx, r.Info.ExperimentID)
			if err != nil {
				return nil, fmt.Errorf("list runs: %w", err)
			}
			rec, err := r.record(name)
			if err != nil {
				return nil, fmt.Errorf("list runs: %w", err)
			}
			out = append(out, rec)
		}
		if got.Token == "" || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		token = got.Token
	}
}

func (c *MLflow) searchExperiments(ctx context.Context) ([]experimentJSON, error) {
	var all []experimentJSON
	token := ""
	for {
		body := map[string]any{"max_results": pageSize, "view_type": "ACTIVE_ONLY"}
		if token != "" {
			body["page_token"] = token
		}
		var got struct {
			Experiments []experimentJSON `json:"experiments"`
			Token       string           `json:"next_page_token"`
		}
		if err := c.call(ctx, "experiments/search", api(http.MethodPost, "experiments/search", body), &got); err != nil {
			return nil, err
		}
		c.mu.Lock()
		for _, e := range got.Experiments {
			c.expNames[e.ID] = e.Name
		}
		c.mu.Unlock()
		all = append(all, got.Experiments...)
		if got.Token == "" {
			return all, nil
		}
		token = got.Token
	}
}

// maxArtifacts bounds the artifact listing Get makes (a folder per call).
const maxArtifacts = 1000

// Get reads a run with every metric's full history and its artifact list.
func (c *MLflow) Get(ctx context.Context, id string) (RunRecord, error) {
	if err := checkID(id); err != nil {
		return RunRecord{}, err
	}
	var got struct {
		Run runJSON `json:"run"`
	}
	if err := c.call(ctx, "runs/get", apiGet("runs/get", url.Values{"run_id": {id}}), &got); err != nil {
		return RunRecord{}, fmt.Errorf("run %s: %w", id, err)
	}
	name, err := c.experimentName(ctx, got.Run.Info.ExperimentID)
	if err != nil {
		return RunRecord{}, fmt.Errorf("run %s: %w", id, err)
	}
	rec, err := got.Run.record(name)
	if err != nil {
		return RunRecord{}, err
	}
	for key := range rec.Metrics {
		h, err := c.metricHistory(ctx, id, key)
		if err != nil {
			return RunRecord{}, fmt.Errorf("run %s: %w", id, err)
		}
		rec.Metrics[key] = h
	}
	if rec.Artifacts, err = c.listArtifacts(ctx, id); err != nil {
		return RunRecord{}, fmt.Errorf("run %s: %w", id, err)
	}
	return rec, nil
}

// metricHistory is every point of key, in step then time order.
func (c *MLflow) metricHistory(ctx context.Context, runID, key string) ([]MetricPoint, error) {
	var out []MetricPoint
	token := ""
	for {
		q := url.Values{"run_id": {runID}, "metric_key": {key}, "max_results": {"25000"}}
		if token != "" {
			q.Set("page_token", token)
		}
		var got struct {
			Metrics []metricRecJSON `json:"metrics"`
			Token   string          `json:"next_page_token"`
		}
		if err := c.call(ctx, "metrics/get-history", apiGet("metrics/get-history", q), &got); err != nil {
			return nil, fmt.Errorf("metric %s: %w", key, err)
		}
		for _, m := range got.Metrics {
			p, err := m.point()
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		if got.Token == "" {
			break
		}
		token = got.Token
	}
	slices.SortStableFunc(out, func(a, b MetricPoint) int {
		return cmp.Or(cmp.Compare(a.Step, b.Step), a.Time.Compare(b.Time))
	})
	return out, nil
}

// listArtifacts walks the run's artifact tree (artifacts/list is one level).
func (c *MLflow) listArtifacts(ctx context.Context, runID string) ([]Artifact, error) {
	var out []Artifact
	dirs := []string{""}
	for len(dirs) > 0 && len(out) < maxArtifacts {
		dir := dirs[0]
		dirs = dirs[1:]
		q := url.Values{"run_id": {runID}}
		if dir != "" {
			q.Set("path", dir)
		}
		var got struct {
			Files []struct {
				Path  string `json:"path"`
				IsDir bool   `json:"is_dir"`
				Size  millis `json:"file_size"`
			} `json:"files"`
		}
		if err := c.call(ctx, "artifacts/list", apiGet("artifacts/list", q), &got); err != nil {
			return nil, fmt.Errorf("list artifacts: %w", err)
		}
		for _, f := range got.Files {
			if f.IsDir {
				dirs = append(dirs, f.Path)
			} else {
				out = append(out, Artifact{Path: f.Path, Size: int64(f.Size)})
			}
		}
	}
	slices.SortFunc(out, func(a, b Artifact) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// ListArtifacts returns the files under path ("" = all) in run runID's
// artifacts, walked recursively (at most 1000).
func (c *MLflow) ListArtifacts(ctx context.Context, runID, path string) ([]Artifact, error) {
	all, err := c.listArtifacts(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", runID, err)
	}
	p, err := cleanArtifactPath(path)
	if err != nil || p == "" {
		return all, err
	}
	var out []Artifact
	for _, a := range all {
		if strings.HasPrefix(a.Path, p+"/") {
			out = append(out, a)
		}
	}
	return out, nil
}
