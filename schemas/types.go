package schemas

import (
	"encoding/base64"
	"encoding/json"
	"time"
)

// Input is a text to classify, as read from the input topics
// (triage.support-queries, triage.reviews). Schema: v1/input.schema.json.
type Input struct {
	ID        string         `json:"id"`
	Text      string         `json:"text"`
	Source    string         `json:"source,omitempty"`
	CreatedAt *time.Time     `json:"created_at,omitempty"`
	Metadata  map[string]any `json:"metadata,omitempty"`
}

// Prediction is the classification of one input record, written to
// triage.predictions. Schema: v1/prediction.schema.json.
type Prediction struct {
	ID           string    `json:"id"`
	Input        InputRef  `json:"input"`
	Label        string    `json:"label"`
	Confidence   float64   `json:"confidence"`
	Scores       []Score   `json:"scores"`
	Model        ModelRef  `json:"model"`
	ClassifiedAt time.Time `json:"classified_at"`
	LatencyMS    float64   `json:"latency_ms"`
	Truncated    bool      `json:"truncated,omitempty"`
	Abstained    bool      `json:"abstained,omitempty"`
	Signals      *Signals  `json:"signals,omitempty"`
}

// Signals are a prediction's inputs to drift monitoring.
type Signals struct {
	Calibrated float64  `json:"calibrated_confidence"`
	Margin     float64  `json:"margin"`
	Tokens     int      `json:"tokens"`
	OOVRate    float64  `json:"oov_rate"`
	EmbedDist  *float64 `json:"embedding_distance,omitempty"`
}

// DriftWindow is one monitoring window of one model on one input topic:
// the monitor produces it to triage.drift (key: model name) when it drifts
// and indexes every window into Elasticsearch (triage-drift-*), so the
// record and the document share this shape. Schema: v1/drift.schema.json.
type DriftWindow struct {
	Timestamp   time.Time      `json:"@timestamp"` // the window's end
	Model       ModelRef       `json:"model"`
	Topic       string         `json:"topic"`
	Window      WindowRef      `json:"window"`
	LabelPSI    float64        `json:"label_psi"`
	LabelJS     float64        `json:"label_js"`
	LabelShares []LabelShare   `json:"label_shares"`
	Confidence  ConfidenceStat `json:"confidence"`
	// EstimatedAccuracy is ATC's estimate (Garg et al. 2022);
	// EstimatedAccuracyCBPE the mean calibrated confidence.
	EstimatedAccuracy     float64 `json:"estimated_accuracy"`
	EstimatedAccuracyCBPE float64 `json:"estimated_accuracy_cbpe"`
	// TrueAccuracy is measured on the window's predictions that have a
	// human label (Labelled of them); absent when none has.
	TrueAccuracy *float64       `json:"true_accuracy,omitempty"`
	Labelled     int            `json:"labelled"`
	Input        InputStat      `json:"input"`
	Embedding    *EmbeddingStat `json:"embedding,omitempty"`
	DomainAUC    *float64       `json:"domain_auc,omitempty"`
	Drift        bool           `json:"drift"`
	Alerts       []string       `json:"alerts"`
	Thresholds   []Threshold    `json:"thresholds"`
}

// WindowRef bounds a window: by count or closed by time.
type WindowRef struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Count int       `json:"count"`
	Kind  string    `json:"kind"` // "count", "time" or "swap" (a new model version)
}

// LabelShare is one label's share of a window's predictions beside its
// share on the model's validation split.
type LabelShare struct {
	Label     string  `json:"label"`
	Share     float64 `json:"share"`
	Reference float64 `json:"reference"`
}

// ConfidenceStat summarises a window's calibrated top-1 probabilities.
type ConfidenceStat struct {
	Mean       float64 `json:"mean"`
	P10        float64 `json:"p10"`
	P50        float64 `json:"p50"`
	P90        float64 `json:"p90"`
	LowShare   float64 `json:"low_share"`
	MarginMean float64 `json:"margin_mean"`
}

// InputStat summarises a window's inputs.
type InputStat struct {
	TokensMean float64 `json:"tokens_mean"`
	OOVRate    float64 `json:"oov_rate"`
}

// EmbeddingStat is the window's embedding shift (models with an encoder).
type EmbeddingStat struct {
	CentroidDistance float64 `json:"centroid_distance"`
}

// Threshold is one statistic's alarm threshold from the model's reference.
type Threshold struct {
	Statistic string  `json:"statistic"`
	Direction string  `json:"direction"` // "above" or "below"
	Value     float64 `json:"value"`
}

// Review is an uncertain prediction offered to a person for labelling
// (topic triage.review-queue, keyed by id): the text, what the model said,
// and its top-2 margin (best minus second-best probability).
type Review struct {
	ID           string    `json:"id"`
	Text         string    `json:"text"`
	Label        string    `json:"label"`
	Confidence   float64   `json:"confidence"`
	Margin       float64   `json:"margin"`
	Scores       []Score   `json:"scores"`
	Model        ModelRef  `json:"model"`
	Input        InputRef  `json:"input"`
	ClassifiedAt time.Time `json:"classified_at"`
	// Abstained marks an item queued because the model abstained (out of
	// scope), not because it hesitated between two labels.
	Abstained bool `json:"abstained,omitempty"`
}

// InputRef locates the input record a prediction was made for.
type InputRef struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// Score is one label's probability.
type Score struct {
	Label string  `json:"label"`
	Score float64 `json:"score"`
}

// ModelRef names the model that made a prediction.
type ModelRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// DeadLetter is an input record that could not be classified, written to
// triage.dead-letters. Schema: v1/dead-letter.schema.json.
type DeadLetter struct {
	Original Original  `json:"original"`
	Reason   Reason    `json:"reason"`
	Source   Source    `json:"source"`
	FailedAt time.Time `json:"failed_at"`
}

// Original is the rejected record, byte for byte.
type Original struct {
	Value   Base64   `json:"value_base64"`
	Key     Base64   `json:"key_base64,omitempty"`
	Headers []Header `json:"headers"`
}

// Header is one record header of the rejected record.
type Header struct {
	Key   string `json:"key"`
	Value Base64 `json:"value_base64"`
}

// Reason says why a record was dead-lettered. Code is one of the Reason*
// constants (the schema's enum).
type Reason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Source locates the rejected record.
type Source struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// Dead-letter reason codes: the enum of reason.code in
// v1/dead-letter.schema.json.
const (
	ReasonInvalidJSON     = "invalid_json"
	ReasonSchemaViolation = "schema_violation"
	ReasonEmptyText       = "empty_text"
	ReasonInvalidUTF8     = "invalid_utf8"
	ReasonTextTooLong     = "text_too_long"
	ReasonUnknownRoute    = "unknown_route"
	ReasonModelError      = "model_error"
	// ReasonUnknownModel: a feedback record names a model that is not one
	// of the known ones (snapshot.ReadFeedback with KnownModels).
	ReasonUnknownModel = "unknown_model"
)

// ReasonCodes lists every dead-letter reason code, in schema order.
func ReasonCodes() []string {
	return []string{ReasonInvalidJSON, ReasonSchemaViolation, ReasonEmptyText, ReasonInvalidUTF8,
		ReasonTextTooLong, ReasonUnknownRoute, ReasonModelError, ReasonUnknownModel}
}

// Feedback is a human-confirmed label, written to triage.feedback.
// Schema: v1/feedback.schema.json. Model names the model whose label set
// Label belongs to; records written before it existed carry none and count
// for whichever model a snapshot is taken for (package snapshot).
type Feedback struct {
	ID        string `json:"id"`
	Text      string `json:"text"`
	Label     string `json:"label"`
	Model     string `json:"model,omitempty"`
	Annotator string `json:"annotator,omitempty"`
	// Eval holds the label out of training: retraining adds it to the
	// model's fixed evaluation set.
	Eval      bool       `json:"eval,omitempty"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
}

// Base64 is raw bytes carried in JSON as a standard (RFC 4648, padded)
// base64 string. Unlike a plain []byte, nil encodes as "" rather than null,
// so a null Kafka value still satisfies the schema's "type": "string".
// A []byte can be assigned to it directly.
type Base64 []byte

// MarshalJSON encodes b as a base64 string ("" when b is nil).
func (b Base64) MarshalJSON() ([]byte, error) {
	out := make([]byte, 0, base64.StdEncoding.EncodedLen(len(b))+2)
	out = append(out, '"')
	out = base64.StdEncoding.AppendEncode(out, b)
	return append(out, '"'), nil
}

// UnmarshalJSON decodes a base64 string; null leaves b unchanged.
func (b *Base64) UnmarshalJSON(data []byte) error {
	var s *string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	if s == nil {
		return nil
	}
	v, err := base64.StdEncoding.DecodeString(*s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
