//go:build !linux

package featurizer

import "time"

func threadCPU() time.Duration { return 0 }
