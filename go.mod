module github.com/triage-ml/triage

go 1.26.8

require (
	github.com/kljensen/snowball v0.10.0
	github.com/peterbourgon/ff/v3 v3.4.0
	github.com/yalue/onnxruntime_go v1.27.0
	golang.org/x/sync v0.25.0
	golang.org/x/text v0.44.0
	google.golang.org/protobuf v1.36.12
)

require gopkg.in/yaml.v2 v2.4.0 // indirect
