package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/scoring"
)

// PredictResponse is POST /v1/predict's answer: one prediction per text,
// in request order.
type PredictResponse struct {
	Predictions []inference.Prediction `json:"predictions"`
	LatencyMS   float64                `json:"latency_ms" doc:"server-side time for the whole request, milliseconds"`
}

func (s *Server) handlePredict(c *fiber.Ctx) error {
	start := time.Now()
	body, ae := s.jsonBody(c)
	if ae != nil {
		return ae
	}
	in, ae := decodePredictRequest(body, limits{maxBatch: s.cfg.MaxBatch, maxTextBytes: s.cfg.MaxTextBytes})
	if ae != nil {
		return ae
	}
	e, ae := s.pickModel(in.model)
	if ae != nil {
		return ae
	}
	defer e.release()
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.PredictTimeout)
	defer cancel()
	// Featurise here, in the request's goroutine: it is most of the CPU
	// work, and it parallelises across requests; only the ONNX Runtime
	// call is shared.
	vs := make([]inference.Input, len(in.texts))
	for i, t := range in.texts {
		vs[i] = e.model.Transform(t)
	}
	var preds []inference.Prediction
	var err error
	if e.batcher != nil {
		preds, err = e.batcher.predict(ctx, vs)
	} else {
		preds, err = safePredict(ctx, e.model, vs)
		s.metrics.batchSize.WithLabelValues(e.name).Observe(float64(len(vs)))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return unavailable("prediction timed out after %v; retry later", s.cfg.PredictTimeout)
	}
	if err != nil {
		return fmt.Errorf("predict with model %s: %w", e.name, err)
	}
	return c.JSON(PredictResponse{Predictions: preds, LatencyMS: float64(time.Since(start).Microseconds()) / 1000})
}

// pickModel acquires the named model, or the only one when name is "".
func (s *Server) pickModel(name string) (*entry, *apiError) {
	if name == "" {
		if s.models.len() == 0 {
			return nil, unavailable("no models loaded")
		}
		if name = s.models.only(); name == "" {
			return nil, badRequest("model", "model is required when several are loaded: %s", strings.Join(s.models.names(), ", "))
		}
	}
	e := s.models.acquire(name)
	if e == nil {
		return nil, notFound("model %q is not loaded (loaded: %s)", name, strings.Join(s.models.names(), ", "))
	}
	return e, nil
}

// ModelList is GET /v1/models.
type ModelList struct {
	Models []ModelInfo `json:"models"`
}

// ModelInfo describes one loaded model, from its model.json.
type ModelInfo struct {
	Name      string       `json:"name" doc:"serving name (the model field of /v1/predict)"`
	Version   string       `json:"version"`
	Kind      string       `json:"kind" doc:"linear (n-grams), encoder (sentence encoder) or hybrid (both)"`
	Labels    []string     `json:"labels"`
	CreatedAt time.Time    `json:"created_at"`
	Metrics   ModelMetrics `json:"metrics" doc:"measured on the held-out validation split"`
	Training  TrainingInfo `json:"training"`
	// Aliases and Versions come from the model registry, when the gateway has one.
	Aliases  map[string]string `json:"aliases,omitempty" doc:"alias -> version; champion is what serves"`
	Versions []VersionInfo     `json:"versions,omitempty" doc:"every registered version, oldest first"`
}

// ModelMetrics are a model's validation figures.
type ModelMetrics struct {
	Validation    ValidationMetrics `json:"validation"`
	TrainAccuracy float64           `json:"train_accuracy"`
}

// ValidationMetrics summarise the validation split; per_class only on
// GET /v1/models/{name}.
type ValidationMetrics struct {
	N        int                             `json:"n"`
	Accuracy float64                         `json:"accuracy"`
	MacroF1  float64                         `json:"macro_f1"`
	PerClass map[string]scoring.ClassMetrics `json:"per_class,omitempty"`
}

// TrainingInfo is where a model came from.
type TrainingInfo struct {
	DataFile       string  `json:"data_file" doc:"base name of the training file"`
	DataSHA256     string  `json:"data_sha256"`
	TextColumn     string  `json:"text_column"`
	LabelColumn    string  `json:"label_column"`
	Rows           int     `json:"rows"`
	TrainRows      int     `json:"train_rows"`
	ValidationRows int     `json:"validation_rows"`
	Seed           uint64  `json:"seed"`
	Seconds        float64 `json:"seconds"`
}

// ModelParams is GET /v1/models/{name}/params.
type ModelParams struct {
	Name        string            `json:"name"`
	Version     string            `json:"version"`
	HyperParams map[string]any    `json:"hyper_params" doc:"the chosen setting: loss, learning_rate, l2, epochs, optimizer, ..."`
	Validation  ValidationMetrics `json:"validation"`
	Search      []bundle.Trial    `json:"search" doc:"every setting tried, with its validation scores"`
}

func modelInfo(name string, m bundle.Manifest, perClass bool) ModelInfo {
	info := ModelInfo{Name: name, Version: m.Version, Kind: m.Graph.Kind, Labels: m.Labels, CreatedAt: m.CreatedAt,
		Metrics: ModelMetrics{Validation: validation(m.Metrics.Validation, perClass), TrainAccuracy: m.Metrics.TrainAcc},
		Training: TrainingInfo{DataFile: filepath.Base(m.Training.DataPath), DataSHA256: m.Training.DataSHA256,
			TextColumn: m.Training.TextColumn, LabelColumn: m.Training.LabelColumn, Rows: m.Training.Rows,
			TrainRows: m.Training.TrainRows, ValidationRows: m.Training.ValRows, Seed: m.Training.Seed, Seconds: m.Training.Seconds}}
	if info.Labels == nil {
		info.Labels = []string{}
	}
	return info
}

func validation(r scoring.Report, perClass bool) ValidationMetrics {
	v := ValidationMetrics{N: r.N, Accuracy: r.Accuracy, MacroF1: r.MacroF1}
	if perClass {
		v.PerClass = r.PerClass
	}
	return v
}

func (s *Server) handleModels(c *fiber.Ctx) error {
	out := ModelList{Models: []ModelInfo{}}
	for _, name := range s.models.names() {
		if e := s.models.acquire(name); e != nil {
			info := modelInfo(name, e.model.Manifest(), false)
			e.release()
			s.registryInfo(c, &info)
			out.Models = append(out.Models, info)
		}
	}
	return c.JSON(out)
}

// namedModel acquires the model named by the :name route parameter.
func (s *Server) namedModel(c *fiber.Ctx) (*entry, *apiError) {
	name := c.Params("name")
	e := s.models.acquire(name)
	if e == nil {
		return nil, notFound("model %q is not loaded (loaded: %s)", name, strings.Join(s.models.names(), ", "))
	}
	return e, nil
}

func (s *Server) handleModel(c *fiber.Ctx) error {
	e, ae := s.namedModel(c)
	if ae != nil {
		return ae
	}
	info := modelInfo(e.name, e.model.Manifest(), true)
	e.release()
	s.registryInfo(c, &info)
	return c.JSON(info)
}

func (s *Server) handleModelParams(c *fiber.Ctx) error {
	e, ae := s.namedModel(c)
	if ae != nil {
		return ae
	}
	defer e.release()
	m := e.model.Manifest()
	out := ModelParams{Name: e.name, Version: m.Version, HyperParams: m.HyperParams,
		Validation: validation(m.Metrics.Validation, false), Search: m.Metrics.Search}
	if out.HyperParams == nil {
		out.HyperParams = map[string]any{}
	}
	if out.Search == nil {
		out.Search = []bundle.Trial{}
	}
	return c.JSON(out)
}

// FeedbackRequest is POST /v1/feedback: a human's label for a text.
type FeedbackRequest struct {
	ID        string `json:"id" doc:"caller's id for the text (e.g. the ticket id), at most 256 bytes"`
	Text      string `json:"text"`
	Label     string `json:"label" doc:"the correct label; one the model does not know yet is accepted (the next retraining adds the class)"`
	Annotator string `json:"annotator,omitempty" doc:"who labelled it"`
	Model     string `json:"model,omitempty" doc:"model whose label set the label is checked against"`
	Eval      bool   `json:"eval,omitempty" doc:"hold this label out of training: it joins the model's fixed evaluation set, on which champion and challenger are compared"`
}

// Accepted is the 202 answer to POST /v1/feedback.
type Accepted struct {
	Status string `json:"status" doc:"accepted"`
	ID     string `json:"id"`
}

const maxShortField = 256

func (s *Server) handleFeedback(c *fiber.Ctx) error {
	if s.cfg.Feedback == nil {
		return unavailable("feedback is not configured on this gateway (no Kafka producer); run it under `triage dev` or with Kafka")
	}
	body, ae := s.jsonBody(c)
	if ae != nil {
		return ae
	}
	var req FeedbackRequest
	if ae := decodeStrict(body, &req); ae != nil {
		return ae
	}
	for _, f := range []struct{ name, v string }{{"id", req.ID}, {"label", req.Label}} {
		if strings.TrimSpace(f.v) == "" {
			return unprocessable(f.name, "%s is required", f.name)
		}
	}
	for _, f := range []struct{ name, v string }{{"id", req.ID}, {"label", req.Label}, {"annotator", req.Annotator}, {"model", req.Model}} {
		if len(f.v) > maxShortField {
			return unprocessable(f.name, "%s is %d bytes; the limit is %d", f.name, len(f.v), maxShortField)
		}
	}
	if ae := checkText("text", req.Text, s.cfg.MaxTextBytes); ae != nil {
		return ae
	}
	// A label the model does not know yet is accepted: the next retraining
	// adds the class. The model must exist, so labels are not lost to a typo.
	if req.Model != "" {
		e := s.models.acquire(req.Model)
		if e == nil {
			return notFound("model %q is not loaded (loaded: %s)", req.Model, strings.Join(s.models.names(), ", "))
		}
		e.release()
	}
	fb := FeedbackRecord{ID: req.ID, Text: req.Text, Label: req.Label, Annotator: req.Annotator, Model: req.Model, Eval: req.Eval}
	ctx, cancel := context.WithTimeout(c.UserContext(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Feedback(ctx, fb); err != nil {
		s.log.Error("feedback hook failed", "id", req.ID, "err", err)
		ae := unavailable("could not record feedback right now; retry later")
		ae.retryAfter = 1
		return ae
	}
	if s.cfg.Review != nil {
		s.cfg.Review.Done(req.ID)
	}
	return c.Status(http.StatusAccepted).JSON(Accepted{Status: "accepted", ID: req.ID})
}
