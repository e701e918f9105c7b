package batch

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		p    Policy
		want []string // substrings of the error; none: valid
	}{
		{"no trigger", Policy{}, []string{"no size trigger"}},
		{"wait alone", Policy{MaxWait: time.Millisecond}, []string{"no size trigger"}},
		{"negative count", Policy{MaxCount: -1, MaxTokens: 10}, []string{"max count -1"}},
		{"negative tokens", Policy{MaxCount: 1, MaxTokens: -5}, []string{"max tokens -5"}},
		{"negative wait", Policy{MaxCount: 1, MaxWait: -time.Second}, []string{"max wait -1s"}},
		{"wait in the wrong unit", Policy{MaxCount: 1, MaxWait: time.Hour}, []string{"max wait 1h0m0s"}},
		{"every problem at once", Policy{MaxCount: -1, MaxTokens: -1, MaxWait: -1}, []string{"max count", "max tokens", "max wait"}},
		{"count only, no wait", Policy{MaxCount: 1}, nil},
		{"tokens only", Policy{MaxTokens: 8192}, nil},
	}
	for _, tc := range cases {
		err := tc.p.Validate()
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: %+v accepted", tc.name, tc.p)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
	}
}

func TestCountTrigger(t *testing.T) {
	tr := NewTracker(Policy{MaxCount: 3, MaxWait: time.Second})
	t0 := time.Now()
	if tr.Add(2, 0, t0) {
		t.Error("2 of 3 reported full")
	}
	if !tr.Fits(1, 0) || tr.Fits(2, 0) {
		t.Error("Fits: one more should fit, two more should not")
	}
	if !tr.Add(1, 0, t0) || tr.Len() != 3 {
		t.Errorf("3 of 3 not full (len %d)", tr.Len())
	}
	tr.Reset()
	if tr.Len() != 0 || tr.Full() {
		t.Error("Reset left items behind")
	}
}

func TestTokenTrigger(t *testing.T) {
	tr := NewTracker(Policy{MaxCount: 100, MaxTokens: 50})
	t0 := time.Now()
	if tr.Add(1, 30, t0) {
		t.Error("30 of 50 tokens reported full")
	}
	if !tr.Fits(1, 20) || tr.Fits(1, 21) {
		t.Error("Fits: 20 more tokens should fit, 21 should not")
	}
	if !tr.Add(1, 20, t0) || tr.Tokens() != 50 {
		t.Errorf("50 of 50 tokens not full (tokens %d)", tr.Tokens())
	}
	// No token limit: only the count fires.
	tr = NewTracker(Policy{MaxCount: 2})
	if tr.Add(1, 1<<30, t0) {
		t.Error("token count fired with no token limit")
	}
}

func TestWaitTrigger(t *testing.T) {
	tr := NewTracker(Policy{MaxCount: 10, MaxWait: 10 * time.Millisecond})
	t0 := time.Now()
	if d := tr.UntilNext(t0); d != 10*time.Millisecond {
		t.Errorf("empty batch: UntilNext = %v, want the whole 10ms", d)
	}
	tr.Add(0, 0, t0) // an empty poll does not start the clock
	tr.Add(1, 0, t0.Add(2*time.Millisecond))
	if d := tr.UntilNext(t0.Add(6 * time.Millisecond)); d != 6*time.Millisecond {
		t.Errorf("UntilNext = %v, want 6ms (clock starts at the first item)", d)
	}
	tr.Add(1, 0, t0.Add(9*time.Millisecond)) // later items do not restart it
	if d := tr.UntilNext(t0.Add(12 * time.Millisecond)); d > 0 {
		t.Errorf("UntilNext = %v after the wait, want <= 0 (due)", d)
	}
	tr.Reset()
	tr.Add(1, 0, t0.Add(20*time.Millisecond))
	if d := tr.UntilNext(t0.Add(20 * time.Millisecond)); d != 10*time.Millisecond {
		t.Errorf("after Reset: UntilNext = %v, want a fresh 10ms", d)
	}
	// Zero wait: a batch is due as soon as it has an item.
	tr = NewTracker(Policy{MaxCount: 10})
	tr.Add(1, 0, t0)
	if d := tr.UntilNext(t0); d > 0 {
		t.Errorf("zero MaxWait: UntilNext = %v, want <= 0", d)
	}
}

func TestRegisterFlags(t *testing.T) {
	p := Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	p.RegisterFlags("dynamic-", fs)
	if f := fs.Lookup("dynamic-batch-wait"); f == nil || f.DefValue != "5ms" {
		t.Fatalf("dynamic-batch-wait flag = %+v, want default 5ms", f)
	}
	if err := fs.Parse([]string{"--dynamic-batch-max", "8", "--dynamic-batch-max-tokens", "100"}); err != nil {
		t.Fatal(err)
	}
	if want := (Policy{MaxCount: 8, MaxWait: 5 * time.Millisecond, MaxTokens: 100}); p != want {
		t.Errorf("policy %+v, want %+v", p, want)
	}
}
