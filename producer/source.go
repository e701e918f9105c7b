package producer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/triage-ml/triage/internal/dataset"
)

// Message is one text a Source yields. ID may be empty: the producer then
// names it <IDPrefix>-<n>, n counting from 1 in the order messages are sent.
type Message struct {
	ID       string
	Text     string
	Source   string         // schemas.Input.Source; Config.Source overrides it
	Metadata map[string]any // schemas.Input.Metadata
}

// Source yields messages until it returns io.EOF. Next must honour ctx: a
// source that blocks (stdin) returns ctx.Err() when ctx ends.
type Source interface {
	Next(ctx context.Context) (Message, error)
}

// --- fixed list ------------------------------------------------------------

type sliceSource struct {
	msgs []Message
	i    int
}

// Messages is a Source over a fixed list, sent once in order.
func Messages(msgs ...Message) Source { return &sliceSource{msgs: msgs} }

// Texts is a Source over texts with generated ids.
func Texts(texts ...string) Source {
	msgs := make([]Message, len(texts))
	for i, t := range texts {
		msgs[i] = Message{Text: t}
	}
	return Messages(msgs...)
}

func (s *sliceSource) Next(ctx context.Context) (Message, error) {
	if err := ctx.Err(); err != nil {
		return Message{}, err
	}
	if s.i >= len(s.msgs) {
		return Message{}, io.EOF
	}
	s.i++
	return s.msgs[s.i-1], nil
}

// --- CSV / JSONL file --------------------------------------------------------

// FileOptions select the columns of a file source.
type FileOptions struct {
	TextColumn string // CSV header name or JSON key of the text; default "text"
	// IDColumn names the column holding ids; "" gives generated ids. When
	// set, every row must have a non-empty id.
	IDColumn string
	// Loop starts over at the first row after the last one, so the count
	// limit, not the file, ends the run. Ids read from IDColumn get a
	// "~<pass>" suffix from the second pass on, so keys stay unique.
	Loop bool
}

// File is a Source over the rows of a CSV/TSV/JSONL file (see
// internal/dataset for the formats).
type File struct {
	rows []Message
	loop bool
	i    int
	pass int
}

// FileSource loads path whole; errors name the file and line.
func FileSource(path string, opt FileOptions) (*File, error) {
	if opt.TextColumn == "" {
		opt.TextColumn = "text"
	}
	ds, err := dataset.Load(path, dataset.Options{TextColumn: opt.TextColumn, LabelColumn: opt.IDColumn, LabelOptional: true})
	if err != nil {
		return nil, err
	}
	src := "file:" + filepath.Base(path)
	f := &File{loop: opt.Loop, rows: make([]Message, len(ds.Examples))}
	for i, ex := range ds.Examples {
		if opt.IDColumn != "" && ex.Label == "" {
			return nil, fmt.Errorf("%s:%d: no id in column %q (--id-column needs an id on every row)", path, ex.Line, opt.IDColumn)
		}
		f.rows[i] = Message{ID: ex.Label, Text: ex.Text, Source: src}
	}
	return f, nil
}

// Len is the number of rows in the file.
func (f *File) Len() int { return len(f.rows) }

// Next returns the next row, starting over at the end when looping.
func (f *File) Next(ctx context.Context) (Message, error) {
	if err := ctx.Err(); err != nil {
		return Message{}, err
	}
	if f.i >= len(f.rows) {
		if !f.loop {
			return Message{}, io.EOF
		}
		f.i, f.pass = 0, f.pass+1
	}
	m := f.rows[f.i]
	f.i++
	if f.pass > 0 && m.ID != "" {
		m.ID = fmt.Sprintf("%s~%d", m.ID, f.pass+1)
	}
	return m, nil
}

// --- lines (stdin) -----------------------------------------------------------

// MaxLineBytes bounds one line of a Lines source.
const MaxLineBytes = 16 << 20

type lineResult struct {
	text string
	err  error
}

type linesSource struct {
	r       io.Reader
	ch      chan lineResult
	started bool
	done    error
}

// Lines is a Source of one text per line of r (stdin); blank lines are
// skipped and a trailing "\r" is dropped. Reading happens in a goroutine so
// Next returns as soon as ctx ends even when r blocks.
func Lines(r io.Reader) Source { return &linesSource{r: r} }

func (s *linesSource) Next(ctx context.Context) (Message, error) {
	if s.done != nil {
		return Message{}, s.done
	}
	if !s.started {
		s.started = true
		s.ch = make(chan lineResult, 256)
		go s.read()
	}
	select {
	case <-ctx.Done():
		return Message{}, ctx.Err()
	case res, ok := <-s.ch:
		if !ok {
			s.done = io.EOF
			return Message{}, io.EOF
		}
		if res.err != nil {
			s.done = res.err
			return Message{}, res.err
		}
		return Message{Text: res.text, Source: "stdin"}, nil
	}
}

func (s *linesSource) read() {
	defer close(s.ch)
	sc := bufio.NewScanner(s.r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	for sc.Scan() {
		text := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		s.ch <- lineResult{text: text}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("a line is longer than %d bytes", MaxLineBytes)
		}
		s.ch <- lineResult{err: fmt.Errorf("read lines: %w", err)}
	}
}
