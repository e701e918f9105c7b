package drift

import (
	"strings"
	"testing"
)

func TestCountWordsIsFields(t *testing.T) {
	for _, s := range []string{"", " ", "one", "  two  words ", "tab\tand\nnewline", "nbsp\u00a0split", "émoji 🙂 ok"} {
		if got, want := countWords(s), len(strings.Fields(s)); got != want {
			t.Errorf("countWords(%q) = %d, strings.Fields gives %d", s, got, want)
		}
	}
}
