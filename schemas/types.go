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
	ID        string     `json:"id"`
	Text      string     `json:"text"`
	Label     string     `json:"label"`
	Model     string     `json:"model,omitempty"`
	Annotator string     `json:"annotator,omitempty"`
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
