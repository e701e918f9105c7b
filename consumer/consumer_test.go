package consumer

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/batch"
	"github.com/triage-ml/triage/schemas"
)

func TestBatchPolicy(t *testing.T) {
	if err := checkBatch(batch.Policy{MaxCount: 0, MaxWait: -time.Second}); err == nil ||
		!strings.Contains(err.Error(), "max count") || !strings.Contains(err.Error(), "max wait") {
		t.Errorf("bad policy error = %v, want both problems named", err)
	}
	if err := checkBatch(batch.Policy{MaxTokens: 512}); err == nil || !strings.Contains(err.Error(), "--batch-max") {
		t.Errorf("token-only policy error = %v, want --batch-max asked for", err)
	}
	if err := checkBatch(batch.Policy{MaxCount: 8, MaxTokens: 512}); err == nil || !strings.Contains(err.Error(), "max tokens 512") {
		t.Errorf("token limit error = %v, want it refused", err)
	}
}

func TestConfigValidate(t *testing.T) {
	var c Config
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "--brokers") || !strings.Contains(err.Error(), "--route") {
		t.Fatalf("empty config error = %v, want brokers and routes named", err)
	}
	c = Config{Brokers: []string{"x:1"}, Routes: map[string]Predictor{"in": Passthrough{}, "triage.predictions": Passthrough{}}, Delivery: "maybe"}
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), "also an input topic") || !strings.Contains(err.Error(), `delivery "maybe"`) {
		t.Errorf("error = %v", err)
	}
	c = Config{Brokers: []string{"x:1"}, Routes: map[string]Predictor{"in": Passthrough{}}, InstanceID: "pod-0"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.TransactionalID != "triage-consumer-pod-0" || c.Delivery != ExactlyOnce || c.Batch != batch.Default() || c.MaxTextBytes != 64<<10 {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestValidateReasons(t *testing.T) {
	c, err := New(Config{Brokers: []string{"x:1"}, Routes: map[string]Predictor{"in": Passthrough{}}, MaxTextBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		topic, value, want string
	}{
		{"in", `{"id":"1","text":"fine"}`, ""},
		{"other", `{"id":"1","text":"fine"}`, schemas.ReasonUnknownRoute},
		{"in", "{\"id\":\"1\",\"text\":\"\xff\"}", schemas.ReasonInvalidUTF8},
		{"in", `{"id":"1","text":`, schemas.ReasonInvalidJSON},
		{"in", `{"text":"no id"}`, schemas.ReasonSchemaViolation},
		{"in", `{"id":"1","text":" \n\t"}`, schemas.ReasonEmptyText},
		{"in", `{"id":"1","text":"more than ten bytes"}`, schemas.ReasonTextTooLong},
	}
	for _, tc := range cases {
		it := item{rec: &kgo.Record{Topic: tc.topic, Value: []byte(tc.value)}}
		c.validate(&it)
		if it.reason != tc.want {
			t.Errorf("%s %q: reason %q (%s), want %q", tc.topic, tc.value, it.reason, it.detail, tc.want)
		}
	}
}
