package tracking

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// TriageVersionTag is the MLflow model-version tag holding the Triage
// registry version it mirrors: the link between the two numberings.
const TriageVersionTag = "triage_version"

// ModelVersion is a version in MLflow's model registry.
type ModelVersion struct {
	Model         string   `json:"model"`
	Version       string   `json:"version"`        // MLflow's number: 1, 2, ...
	TriageVersion string   `json:"triage_version"` // the TriageVersionTag
	Source        string   `json:"source"`
	RunID         string   `json:"run_id"`
	Status        string   `json:"status"`
	Aliases       []string `json:"aliases,omitempty"`
}

type modelVersionJSON struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	Source  string   `json:"source"`
	RunID   string   `json:"run_id"`
	Status  string   `json:"status"`
	Tags    []kv     `json:"tags"`
	Aliases []string `json:"aliases"`
}

func (m modelVersionJSON) version() ModelVersion {
	v := ModelVersion{Model: m.Name, Version: m.Version, Source: m.Source, RunID: m.RunID, Status: m.Status, Aliases: m.Aliases}
	for _, t := range m.Tags {
		if t.Key == TriageVersionTag {
			v.TriageVersion = t.Value
		}
	}
	return v
}

// checkName keeps names out of MLflow's filter syntax (single-quoted
// strings); Triage's model names and versions never hold quotes.
func checkName(what, s string) error {
	if s == "" || strings.ContainsAny(s, `'"\`) {
		return fmt.Errorf("%s %q: must be non-empty, without quotes or backslashes: %w", what, s, ErrInvalid)
	}
	return nil
}

// ensureModel creates the registered model unless it exists.
func (c *MLflow) ensureModel(ctx context.Context, model string) error {
	c.mu.Lock()
	known := c.models[model]
	c.mu.Unlock()
	if known {
		return nil
	}
	err := c.call(ctx, "registered-models/create", api(http.MethodPost, "registered-models/create", map[string]any{"name": model}), nil)
	if err != nil && !errors.Is(err, errAlreadyExists) {
		return fmt.Errorf("registered model %q: %w", model, err)
	}
	c.mu.Lock()
	c.models[model] = true
	c.mu.Unlock()
	return nil
}

// RegisterVersion creates MLflow model version of model whose source is
// artifactPath in run runID's artifacts, tagged with Triage's version.
// When one already carries that tag, it is kept.
func (c *MLflow) RegisterVersion(ctx context.Context, model, version, runID, artifactPath string) error {
	if err := errors.Join(checkName("model", model), checkName("version", version), checkID(runID)); err != nil {
		return fmt.Errorf("register %s %s in mlflow: %w", model, version, err)
	}
	ap, err := cleanArtifactPath(artifactPath)
	if err != nil {
		return fmt.Errorf("register %s %s in mlflow: %w", model, version, err)
	}
	if err := c.ensureModel(ctx, model); err != nil {
		return fmt.Errorf("register %s %s in mlflow: %w", model, version, err)
	}
	if _, err := c.versionNumber(ctx, model, version); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("register %s %s in mlflow: %w", model, version, err)
	}
	root, err := c.runArtifactURI(ctx, runID)
	if err != nil {
		return fmt.Errorf("register %s %s in mlflow: %w", model, version, err)
	}
	source := strings.TrimSuffix(root, "/")
	if ap != "" {
		source += "/" + ap
	}
	body := map[string]any{"name": model, "source": source, "run_id": runID,
		"tags":        []kv{{TriageVersionTag, version}},
		"description": "Triage registry version " + version}
	var got struct {
		ModelVersion modelVersionJSON `json:"model_version"`
	}
	if err := c.call(ctx, "model-versions/create", api(http.MethodPost, "model-versions/create", body), &got); err != nil {
		return fmt.Errorf("register %s %s in mlflow: %w", model, version, err)
	}
	c.remember(model, version, got.ModelVersion.Version)
	return nil
}

func (c *MLflow) remember(model, triage, mlflowVersion string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.versions[model] == nil {
		c.versions[model] = map[string]string{}
	}
	c.versions[model][triage] = mlflowVersion
}

// versionNumber is the MLflow version mirroring Triage version: from
// memory, else searched by tag (another process may have registered it).
func (c *MLflow) versionNumber(ctx context.Context, model, version string) (string, error) {
	c.mu.Lock()
	n, ok := c.versions[model][version]
	c.mu.Unlock()
	if ok {
		return n, nil
	}
	mv, err := c.FindVersion(ctx, model, version)
	if err != nil {
		return "", err
	}
	c.remember(model, version, mv.Version)
	return mv.Version, nil
}

// FindVersion returns the MLflow version of model tagged with Triage
// version (the lowest, should a race have made two), or an error wrapping
// ErrNotFound.
func (c *MLflow) FindVersion(ctx context.Context, model, version string) (ModelVersion, error) {
	if err := errors.Join(checkName("model", model), checkName("version", version)); err != nil {
		return ModelVersion{}, err
	}
	q := url.Values{
		"filter":      {fmt.Sprintf("name='%s' AND tags.%s='%s'", model, TriageVersionTag, version)},
		"max_results": {"100"},
	}
	var got struct {
		ModelVersions []modelVersionJSON `json:"model_versions"`
	}
	if err := c.call(ctx, "model-versions/search", apiGet("model-versions/search", q), &got); err != nil {
		return ModelVersion{}, fmt.Errorf("find %s %s in mlflow: %w", model, version, err)
	}
	var found []ModelVersion
	for _, m := range got.ModelVersions {
		if v := m.version(); v.Model == model && v.TriageVersion == version {
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		return ModelVersion{}, fmt.Errorf("%s %s: %w in mlflow's model registry", model, version, ErrNotFound)
	}
	return slices.MinFunc(found, func(a, b ModelVersion) int { return versionCmp(a.Version, b.Version) }), nil
}

func versionCmp(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	return x - y
}

// runArtifactURI is run's artifact root (mlflow-artifacts:/<exp>/<run>/artifacts).
func (c *MLflow) runArtifactURI(ctx context.Context, runID string) (string, error) {
	c.mu.Lock()
	uri, ok := c.artifacts[runID]
	c.mu.Unlock()
	if ok {
		return uri, nil
	}
	var got struct {
		Run runJSON `json:"run"`
	}
	if err := c.call(ctx, "runs/get", apiGet("runs/get", url.Values{"run_id": {runID}}), &got); err != nil {
		return "", fmt.Errorf("run %s: %w", runID, err)
	}
	uri = got.Run.Info.ArtifactURI
	c.mu.Lock()
	c.artifacts[runID] = uri
	c.mu.Unlock()
	return uri, nil
}

// SetAlias points alias of model at the MLflow version mirroring Triage
// version, which RegisterVersion must have recorded.
func (c *MLflow) SetAlias(ctx context.Context, model, alias, version string) error {
	if err := errors.Join(checkName("model", model), checkName("alias", alias), checkName("version", version)); err != nil {
		return fmt.Errorf("set mlflow alias: %w", err)
	}
	n, err := c.versionNumber(ctx, model, version)
	if err != nil {
		return fmt.Errorf("set mlflow alias %s of %s to %s: %w", alias, model, version, err)
	}
	body := map[string]any{"name": model, "alias": alias, "version": n}
	if err := c.call(ctx, "registered-models/alias", api(http.MethodPost, "registered-models/alias", body), nil); err != nil {
		return fmt.Errorf("set mlflow alias %s of %s to %s (mlflow version %s): %w", alias, model, version, n, err)
	}
	return nil
}

// RemoveAlias deletes alias of model; an absent alias or model is fine.
func (c *MLflow) RemoveAlias(ctx context.Context, model, alias string) error {
	if err := errors.Join(checkName("model", model), checkName("alias", alias)); err != nil {
		return fmt.Errorf("remove mlflow alias: %w", err)
	}
	// MLflow reads a DELETE's parameters from its JSON body.
	body := map[string]any{"name": model, "alias": alias}
	err := c.call(ctx, "registered-models/alias", api(http.MethodDelete, "registered-models/alias", body), nil)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("remove mlflow alias %s of %s: %w", alias, model, err)
	}
	return nil
}

// Alias returns the model version alias of model points at, read through
// GET registered-models/alias, or an error wrapping ErrNotFound.
func (c *MLflow) Alias(ctx context.Context, model, alias string) (ModelVersion, error) {
	var got struct {
		ModelVersion modelVersionJSON `json:"model_version"`
	}
	q := url.Values{"name": {model}, "alias": {alias}}
	err := c.call(ctx, "registered-models/alias", apiGet("registered-models/alias", q), &got)
	var apiErr *APIError
	// MLflow answers an absent alias with 400 INVALID_PARAMETER_VALUE.
	if errors.As(err, &apiErr) && apiErr.Code == "INVALID_PARAMETER_VALUE" && strings.Contains(apiErr.Message, "not found") {
		return ModelVersion{}, fmt.Errorf("alias %s of %s: %w in mlflow (%w)", alias, model, ErrNotFound, err)
	}
	if err != nil {
		return ModelVersion{}, fmt.Errorf("alias %s of %s: %w", alias, model, err)
	}
	return got.ModelVersion.version(), nil
}
