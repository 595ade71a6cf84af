package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxDepth bounds the nesting of a JSON document.
const maxDepth = 1000

// The parsers' work is bounded before the decoder's node budget (maxNodes) applies, since a
// parse tree costs a few hundred bytes a node: an 8 MiB list of zeros would otherwise cost
// over a gigabyte before the decoder refused it.
const (
	// maxJSONNodes bounds the values and keys of a JSON document; the parser counts them and
	// stops at the first over it (about 170 MB of parse tree at most).
	maxJSONNodes = 1 << 19
	// maxYAMLIndicators bounds the characters of a YAML document that can start a node (each
	// of ",[{:?", and "-" before a blank, wherever it stands, quoted or in a comment: an
	// overestimate), counted before the YAML library parses it. One stands for about two
	// nodes (a key and its value), so a document gets about the same allowance in either
	// syntax; each costs at most about 500 bytes of parse, about 130 MB in all.
	maxYAMLIndicators = 1 << 18
)

// positions turns byte offsets into 1-based lines and columns.
type positions []int // the offset where each line starts

func newPositions(data []byte) positions {
	p := positions{0}
	for i, c := range data {
		if c == '\n' {
			p = append(p, i+1)
		}
	}
	return p
}

func (p positions) at(off int) (line, col int) {
	i := sort.Search(len(p), func(i int) bool { return p[i] > off }) - 1
	return i + 1, off - p[i] + 1
}

// parseJSON reads a JSON document into a node tree, each node positioned where its token
// starts. It refuses what encoding/json refuses, and data after the document.
func parseJSON(data []byte) (*yaml.Node, error) {
	p := &jsonParser{data: data, pos: newPositions(data), dec: json.NewDecoder(bytes.NewReader(data)), budget: maxJSONNodes}
	p.dec.UseNumber()
	root, err := p.value(0)
	if err != nil {
		return nil, err
	}
	off := p.start()
	if _, err := p.dec.Token(); err != io.EOF {
		line, col := p.pos.at(off)
		return nil, &Error{Line: line, Column: col, Err: errors.New("data after the JSON document")}
	}
	return root, nil
}

type jsonParser struct {
	data   []byte
	pos    positions
	dec    *json.Decoder
	budget int // the nodes still allowed
}

// start is the offset of the next token: past the whitespace and separators after the last.
func (p *jsonParser) start() int {
	off := int(p.dec.InputOffset())
	for off < len(p.data) && strings.IndexByte(" \t\r\n,:", p.data[off]) >= 0 {
		off++
	}
	return off
}

func (p *jsonParser) syntax(err error) error {
	off := len(p.data)
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		off = int(se.Offset) // Token's offsets are the offending byte's
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = errors.New("unexpected end of JSON input")
	}
	line, col := p.pos.at(min(off, len(p.data)))
	return &Error{Line: line, Column: col, Err: errors.New(strings.TrimPrefix(err.Error(), "json: "))}
}

func (p *jsonParser) value(depth int) (*yaml.Node, error) {
	off := p.start()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntax(err)
	}
	line, col := p.pos.at(off)
	if p.budget--; p.budget < 0 {
		return nil, &Error{Line: line, Column: col, Err: fmt.Errorf("document too complex (over %d JSON values and keys)", maxJSONNodes)}
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Line: line, Column: col}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxDepth {
			return nil, &Error{Line: line, Column: col, Err: fmt.Errorf("nested deeper than %d levels", maxDepth)}
		}
		n.Kind, n.Tag, n.Style = yaml.MappingNode, "!!map", yaml.FlowStyle
		if t == '[' {
			n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
		}
		for p.dec.More() {
			if n.Kind == yaml.MappingNode {
				k, err := p.value(depth + 1) // a key: Token checks it is a string
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, k)
			}
			c, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		if _, err := p.dec.Token(); err != nil { // the closing delimiter
			return nil, p.syntax(err)
		}
	case string:
		n.Tag, n.Value, n.Style = strTag, t, yaml.DoubleQuotedStyle
	case json.Number:
		n.Tag, n.Value = intTag, string(t)
		if strings.ContainsAny(string(t), ".eE") {
			n.Tag = floatTag
		}
	case bool:
		n.Tag, n.Value = boolTag, strconv.FormatBool(t)
	case nil:
		n.Tag, n.Value = nullTag, "null"
	}
	return n, nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// parseYAML reads one YAML document into a node tree. The YAML library's parser errors give
// the line where the enclosing construct starts, counted from 0; the line reported here is
// the first line at which the document, cut there, fails the same way: where it went wrong.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		// The YAML library has panicked on malformed input in past releases; a config
		// reloader must survive any file.
		if r := recover(); r != nil {
			root, err = nil, &Error{Err: fmt.Errorf("malformed YAML document (%v)", r)}
		}
	}()
	if err := yamlItems(data); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, ErrEmpty
		}
		return nil, yamlSyntax(data, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
		return &doc, nil
	case err != nil:
		return nil, yamlSyntax(data, err)
	}
	e := &Error{Err: errors.New("more than one document (a line \"---\" starts another)")}
	if len(extra.Content) > 0 {
		e.Line = extra.Content[0].Line
	}
	return nil, e
}

// yamlItems refuses a YAML document with more than maxYAMLIndicators characters that can
// start a node, naming the line of the first over the limit; it allocates nothing otherwise.
func yamlItems(data []byte) error {
	n, line := 0, 1
	for i, c := range data {
		switch c {
		case '\n':
			line++
		case '-': // an indicator only before a blank: "my-service" is one scalar
			if i+1 < len(data) && !isBlank(data[i+1]) {
				continue
			}
			fallthrough
		case ',', '[', '{', ':', '?':
			if n++; n > maxYAMLIndicators {
				return &Error{Line: line, Err: fmt.Errorf("document too complex (over %d YAML items: the characters \",[{:?\" and \"- \" that can start a value or key)", maxYAMLIndicators)}
			}
		}
	}
	return nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func yamlSyntax(data []byte, err error) error {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if k := failingLine(data, msg); k > 0 {
		line = k
	}
	return &Error{Line: line, Err: errors.New(msg)}
}

// failingLine returns the least k such that the first k lines of data fail to parse with
// message msg, or 0.
func failingLine(data []byte, msg string) int {
	ends := []int{}
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	fails := func(k int) bool {
		_, err := parsePrefix(data[:ends[k-1]])
		if err == nil {
			return false
		}
		m := err.Error()
		if loc := yamlLine.FindString(m); loc != "" {
			m = m[len(loc):]
		}
		return strings.TrimPrefix(m, "yaml: ") == msg
	}
	k := sort.Search(len(ends), func(i int) bool { return fails(i + 1) }) + 1
	if k > len(ends) {
		return 0
	}
	return k
}

func parsePrefix(data []byte) (n *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, err
	}
	return &doc, nil
}
