package consumer

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestBatchPolicy(t *testing.T) {
	if err := (BatchPolicy{MaxRecords: 0, MaxWait: -time.Second}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "max records") || !strings.Contains(err.Error(), "max wait") {
		t.Errorf("bad policy error = %v, want both problems named", err)
	}
	b := batchClock{policy: BatchPolicy{MaxRecords: 3, MaxWait: 10 * time.Millisecond}}
	t0 := time.Now()
	if b.untilNext(t0) != 10*time.Millisecond {
		t.Error("empty batch should wait the full period")
	}
	if b.add(2, t0) {
		t.Error("2 of 3 reported full")
	}
	if d := b.untilNext(t0.Add(4 * time.Millisecond)); d != 6*time.Millisecond {
		t.Errorf("untilNext = %v, want 6ms", d)
	}
	if !b.add(1, t0.Add(5*time.Millisecond)) {
		t.Error("3 of 3 not full")
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
	if c.TransactionalID != "triage-consumer-pod-0" || c.Delivery != ExactlyOnce || c.Batch != DefaultBatchPolicy() || c.MaxTextBytes != 64<<10 {
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
		{"other", `{"id":"1","text":"fine"}`, ReasonUnknownRoute},
		{"in", "{\"id\":\"1\",\"text\":\"\xff\"}", ReasonInvalidUTF8},
		{"in", `{"id":"1","text":`, ReasonInvalidJSON},
		{"in", `{"text":"no id"}`, ReasonSchemaViolation},
		{"in", `{"id":"1","text":" \n\t"}`, ReasonEmptyText},
		{"in", `{"id":"1","text":"more than ten bytes"}`, ReasonTextTooLong},
	}
	for _, tc := range cases {
		it := item{rec: &kgo.Record{Topic: tc.topic, Value: []byte(tc.value)}}
		c.validate(&it)
		if it.reason != tc.want {
			t.Errorf("%s %q: reason %q (%s), want %q", tc.topic, tc.value, it.reason, it.detail, tc.want)
		}
	}
}
