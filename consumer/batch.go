package consumer

import (
	"errors"
	"fmt"

	"github.com/triage-ml/triage/batch"
)

// checkBatch validates the micro-batch policy for the consumer, which
// splits batches by record count and never tokenises: it needs MaxCount
// and cannot honour MaxTokens.
func checkBatch(p batch.Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	var errs []error
	if p.MaxCount < 1 {
		errs = append(errs, fmt.Errorf("batch max count %d: the consumer needs >= 1 (--batch-max)", p.MaxCount))
	}
	if p.MaxTokens != 0 {
		errs = append(errs, fmt.Errorf("batch max tokens %d: the consumer batches by record count; leave it 0", p.MaxTokens))
	}
	return errors.Join(errs...)
}
