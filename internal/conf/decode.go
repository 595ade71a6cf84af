package conf

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxBytes bounds a document: configuration is small, and a reloader must not read a runaway
// file into memory.
const MaxBytes = 8 << 20

// ErrEmpty is returned by [Decode] for a document that says nothing: empty, blank, only
// comments, or "null". Callers decide whether that is an error (a reloader must not read a
// truncated file as "no configuration").
var ErrEmpty = errors.New("empty document")

// Error is a problem at a place in a document. Path is in the document's own names
// ("routes[2].retry.attempts"); Line and Column are 1-based, 0 when unknown (a fragment decoded
// by UnmarshalJSON, or a check made after decoding).
type Error struct {
	Path   string
	Line   int
	Column int
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	if loc := Location(e.Line, e.Column); loc != "" {
		b.WriteString(" (" + loc + ")")
	}
	return b.String()
}

// Unwrap returns the problem.
func (e *Error) Unwrap() error { return e.Err }

// Location formats a position as "line L, column C", "line L", or "" when line is 0.
func Location(line, col int) string {
	switch {
	case line <= 0:
		return ""
	case col <= 0:
		return "line " + strconv.Itoa(line)
	}
	return "line " + strconv.Itoa(line) + ", column " + strconv.Itoa(col)
}

// IsJSON reports whether data reads as JSON: its first non-blank character is '{' or '['.
// Anything else is read as YAML.
func IsJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// Decode reads one YAML or JSON document (see [IsJSON]) strictly into v, a non-nil pointer:
// keys are the fields' json names (camelCase), an unknown or repeated key is an error, a
// [time.Duration] (or a type with a Std() time.Duration method) is a string such as "250ms",
// numbers must fit their field and be whole for integer fields. Every error is an *[Error]
// naming the path and position. A document that says nothing returns [ErrEmpty].
func Decode(data []byte, v any) error {
	root, isJSON, err := Parse(data)
	if err != nil {
		return err
	}
	return decodeRoot(root, v, isJSON, true)
}

// Parse reads a YAML or JSON document into a node tree with positions, for [DecodeNode].
// isJSON says which syntax it was read as.
func Parse(data []byte) (root *yaml.Node, isJSON bool, err error) {
	if len(data) > MaxBytes {
		return nil, false, &Error{Err: fmt.Errorf("document of %d bytes is over the %d-byte limit", len(data), MaxBytes)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, false, ErrEmpty
	}
	if IsJSON(data) {
		root, err = parseJSON(data)
		return root, true, err
	}
	root, err = parseYAML(data)
	return root, false, err
}

// DecodeNode decodes a parsed node tree strictly into v, as Decode does. isJSON makes the
// scalar checks JSON's (a string field wants a quoted string).
func DecodeNode(root *yaml.Node, v any, isJSON bool) error {
	return decodeRoot(root, v, isJSON, true)
}

// UnmarshalJSON is Decode for a JSON fragment handed to a json.Unmarshaler: positions are
// left out, since they would count from the fragment, not the caller's document.
func UnmarshalJSON(data []byte, v any) error {
	if len(data) > MaxBytes {
		return &Error{Err: fmt.Errorf("document of %d bytes is over the %d-byte limit", len(data), MaxBytes)}
	}
	root, err := parseJSON(data)
	if err != nil {
		return err
	}
	return decodeRoot(root, v, true, false)
}

// UnmarshalYAML is DecodeNode for a node handed to a yaml.Unmarshaler: positions are the
// caller's document's, paths start at the node.
func UnmarshalYAML(n *yaml.Node, v any) error {
	return decodeRoot(n, v, false, true)
}

func decodeRoot(root *yaml.Node, v any, isJSON, positions bool) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &Error{Err: fmt.Errorf("decode into %T: want a non-nil pointer", v)}
	}
	for root != nil && root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			root = nil
			break
		}
		root = root.Content[0]
	}
	if root == nil || (root.Kind == yaml.ScalarNode && root.ShortTag() == nullTag) {
		return ErrEmpty
	}
	d := &decoder{json: isJSON, positions: positions, budget: maxNodes}
	return d.value(root, rv.Elem(), "")
}

// maxNodes bounds the nodes one decode visits, aliases followed: a YAML alias bomb (a
// billion laughs) fails instead of running for ever.
const maxNodes = 1 << 20

const (
	nullTag  = "!!null"
	strTag   = "!!str"
	intTag   = "!!int"
	floatTag = "!!float"
	boolTag  = "!!bool"
)

type decoder struct {
	json      bool
	positions bool
	budget    int
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	textUnmarshal = reflect.TypeFor[encoding.TextUnmarshaler]()
	stdDuration   = reflect.TypeFor[interface{ Std() time.Duration }]()
)

// isDuration reports whether t is written as a duration string: time.Duration, or an int64
// type with a Std() time.Duration method (route.Duration).
func isDuration(t reflect.Type) bool {
	return t == durationType || (t.Kind() == reflect.Int64 && t.Implements(stdDuration))
}

func (d *decoder) fail(n *yaml.Node, path string, format string, args ...any) error {
	e := &Error{Path: path, Err: fmt.Errorf(format, args...)}
	if d.positions && n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) error {
	if d.budget--; d.budget < 0 {
		return d.fail(n, path, "document too complex (over %d nodes, aliases expanded)", maxNodes)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return d.fail(n, path, "unknown alias")
		}
		return d.value(n.Alias, v, path)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag {
		v.SetZero()
		return nil
	}
	t := v.Type()
	switch {
	case isDuration(t):
		return d.duration(n, v, path)
	case t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(textUnmarshal):
		if n.Kind != yaml.ScalarNode {
			return d.fail(n, path, "want a string, got %s", describe(n))
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			return d.fail(n, path, "%v", err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		if err := d.value(n, p.Elem(), path); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		return d.structure(n, v, path)
	case reflect.Map:
		return d.mapping(n, v, path)
	case reflect.Slice, reflect.Array:
		return d.sequence(n, v, path)
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return d.fail(n, path, "cannot be configured from a document (%v)", t)
		}
		var x any
		if err := n.Decode(&x); err != nil {
			return d.fail(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
		return nil
	}
	return d.scalar(n, v, path)
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.ScalarNode {
		return d.fail(n, path, "want a duration string such as \"250ms\", got %s", describe(n))
	}
	switch tag := n.ShortTag(); {
	case tag == intTag || tag == floatTag:
		return d.fail(n, path, "want a duration string such as \"250ms\" or \"2s\", got the bare number %s (write the unit)", truncate(n.Value))
	case tag != strTag:
		return d.fail(n, path, "want a duration string such as \"250ms\", got %s", describe(n))
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		return d.fail(n, path, "want a duration string such as \"250ms\", got %q", truncate(n.Value))
	}
	v.SetInt(int64(dur))
	return nil
}

// describe names what a node holds, for "want X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case strTag:
		return strconv.Quote(truncate(n.Value))
	case nullTag:
		return "null"
	}
	return truncate(n.Value)
}

func truncate(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return d.fail(n, path, "want a mapping, got %s", describe(n))
	}
	fields := fieldsOf(v.Type())
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind != yaml.ScalarNode {
			return d.fail(kn, path, "want a field name, got %s", describe(kn))
		}
		key := kn.Value
		fp := join(path, key)
		if prev := seen[key]; prev != nil {
			return d.fail(kn, fp, "repeated field (first at %s)", Location(prev.Line, prev.Column))
		}
		seen[key] = kn
		f, ok := fields.byName[key]
		if !ok {
			return d.fail(kn, fp, "unknown field %q%s", truncate(key), fields.suggest(key))
		}
		fv, err := fieldByIndex(v, f.index)
		if err != nil {
			return d.fail(kn, fp, "%v", err)
		}
		if err := d.value(vn, fv, fp); err != nil {
			return err
		}
	}
	return nil
}

// fieldByIndex is v.FieldByIndex, allocating nil embedded pointers on the way.
func fieldByIndex(v reflect.Value, index []int) (reflect.Value, error) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return v, errors.New("cannot set an unexported embedded field")
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, nil
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return d.fail(n, path, "want a mapping, got %s", describe(n))
	}
	t := v.Type()
	m := reflect.MakeMapWithSize(t, len(n.Content)/2)
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind != yaml.ScalarNode {
			return d.fail(kn, path, "want a scalar key, got %s", describe(kn))
		}
		fp := join(path, kn.Value)
		if prev := seen[kn.Value]; prev != nil {
			return d.fail(kn, fp, "repeated key (first at %s)", Location(prev.Line, prev.Column))
		}
		seen[kn.Value] = kn
		k := reflect.New(t.Key()).Elem()
		if t.Key().Kind() == reflect.String && !reflect.PointerTo(t.Key()).Implements(textUnmarshal) {
			k.SetString(kn.Value)
		} else if err := d.value(kn, k, fp); err != nil {
			return err
		}
		e := reflect.New(t.Elem()).Elem()
		if err := d.value(vn, e, fp); err != nil {
			return err
		}
		m.SetMapIndex(k, e)
	}
	v.Set(m)
	return nil
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.SequenceNode {
		return d.fail(n, path, "want a list, got %s", describe(n))
	}
	if v.Kind() == reflect.Array {
		if len(n.Content) != v.Len() {
			return d.fail(n, path, "want a list of %d, got %d", v.Len(), len(n.Content))
		}
		for i, c := range n.Content {
			if err := d.value(c, v.Index(i), path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
		return nil
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		if err := d.value(c, s.Index(i), path+"["+strconv.Itoa(i)+"]"); err != nil {
			return err
		}
	}
	v.Set(s)
	return nil
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.ScalarNode {
		return d.fail(n, path, "want %s, got %s", want(v.Type()), describe(n))
	}
	tag := n.ShortTag()
	switch v.Kind() {
	case reflect.String:
		if d.json && tag != strTag {
			return d.fail(n, path, "want a string, got %s", describe(n))
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		var b bool
		if tag != boolTag || n.Decode(&b) != nil {
			return d.fail(n, path, "want true or false, got %s", describe(n))
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := wholeInt(n, tag)
		if !ok || v.OverflowInt(i) {
			lo, hi := intRange(v.Type())
			return d.fail(n, path, "must be a whole number from %d to %d, got %s", lo, hi, describe(n))
		}
		v.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u, ok := wholeUint(n, tag)
		if !ok || v.OverflowUint(u) {
			return d.fail(n, path, "must be a whole number from 0 to %d, got %s", uint64(math.MaxUint64)>>(64-v.Type().Bits()), describe(n))
		}
		v.SetUint(u)
		return nil
	case reflect.Float32, reflect.Float64:
		var f float64
		if (tag != intTag && tag != floatTag) || n.Decode(&f) != nil || (!math.IsInf(f, 0) && v.OverflowFloat(f)) {
			return d.fail(n, path, "want a number, got %s", describe(n))
		}
		v.SetFloat(f)
		return nil
	}
	return d.fail(n, path, "cannot be configured from a document (%v)", v.Type())
}

func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	}
	return "a number"
}

func wholeInt(n *yaml.Node, tag string) (int64, bool) {
	var i int64
	switch tag {
	case intTag:
		return i, n.Decode(&i) == nil
	case floatTag:
		var f float64
		if n.Decode(&f) != nil || f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
			return 0, false
		}
		return int64(f), true
	}
	return 0, false
}

func wholeUint(n *yaml.Node, tag string) (uint64, bool) {
	var u uint64
	switch tag {
	case intTag:
		return u, n.Decode(&u) == nil
	case floatTag:
		var f float64
		if n.Decode(&f) != nil || f != math.Trunc(f) || f < 0 || f >= 1<<64 {
			return 0, false
		}
		return uint64(f), true
	}
	return 0, false
}

func intRange(t reflect.Type) (int64, int64) {
	hi := int64(uint64(1)<<(t.Bits()-1) - 1)
	return -hi - 1, hi
}

// join appends a field or map key to a path: ".name" for plain names, `["a.b"]` otherwise.
func join(path, key string) string {
	plain := key != ""
	for _, c := range key {
		if !(c == '_' || c == '-' || c == '*' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')) {
			plain = false
			break
		}
	}
	if !plain {
		return path + "[" + strconv.Quote(truncate(key)) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}
