package schemas

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends p encoded exactly as json.Marshal(p) would encode it
// (HTML-escaped strings, ES6-style floats, omitempty fields) without
// reflection or allocation, for the consumer's hot path. A NaN or infinite
// float is an error, as it is for json.Marshal. Kept byte-identical by
// TestPredictionAppendJSON.
func (p *Prediction) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, p.ID)
	b = append(b, `,"input":{"topic":`...)
	b = appendJSONString(b, p.Input.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(p.Input.Partition), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, p.Input.Offset, 10)
	b = append(b, `},"label":`...)
	b = appendJSONString(b, p.Label)
	b = append(b, `,"confidence":`...)
	var err error
	b, err = appendJSONFloat(b, p.Confidence, err)
	b = append(b, `,"scores":`...)
	if p.Scores == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range p.Scores {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"label":`...)
			b = appendJSONString(b, p.Scores[i].Label)
			b = append(b, `,"score":`...)
			b, err = appendJSONFloat(b, p.Scores[i].Score, err)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"model":{"name":`...)
	b = appendJSONString(b, p.Model.Name)
	b = append(b, `,"version":`...)
	b = appendJSONString(b, p.Model.Version)
	b = append(b, `},"classified_at":"`...)
	b, terr := p.ClassifiedAt.AppendText(b) // what Time.MarshalJSON writes, quotes aside
	if terr != nil {
		err = errors.Join(err, terr)
	}
	b = append(b, `","latency_ms":`...)
	b, err = appendJSONFloat(b, p.LatencyMS, err)
	if p.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	if p.Abstained {
		b = append(b, `,"abstained":true`...)
	}
	if s := p.Signals; s != nil {
		b = append(b, `,"signals":{"calibrated_confidence":`...)
		b, err = appendJSONFloat(b, s.Calibrated, err)
		b = append(b, `,"margin":`...)
		b, err = appendJSONFloat(b, s.Margin, err)
		b = append(b, `,"tokens":`...)
		b = strconv.AppendInt(b, int64(s.Tokens), 10)
		b = append(b, `,"oov_rate":`...)
		b, err = appendJSONFloat(b, s.OOVRate, err)
		if s.EmbedDist != nil {
			b = append(b, `,"embedding_distance":`...)
			b, err = appendJSONFloat(b, *s.EmbedDist, err)
		}
		b = append(b, '}')
	}
	b = append(b, '}')
	if err != nil {
		return b, errors.New("json: " + err.Error())
	}
	return b, nil
}

// appendJSONFloat is encoding/json's float64 encoder, passing err on: 'f' format except
// for magnitudes below 1e-6 or from 1e21, which use 'e' with the
// exponent's leading zero dropped.
func appendJSONFloat(b []byte, f float64, err error) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, errors.Join(err, errors.New("unsupported value: "+strconv.FormatFloat(f, 'g', -1, 64)))
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, err
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoder with HTML escaping
// (json.Marshal's default): <, > and & become \u003c, \u003e, \u0026,
// invalid UTF-8 becomes \ufffd, and U+2028/U+2029 are escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
